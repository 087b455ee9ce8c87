// The README's library example: tag images with any labels.
//   node --import tsx examples/quickstart.ts photo.jpg [more.jpg ...]
// Uses the bundled pico-CLIP and head; pass CLIP_DECODER_MODEL / CLIP_DECODER_HEAD to use others.
import { Tagger } from '../src/index.ts';

const images = process.argv.slice(2);
if (images.length === 0) {
  console.error('usage: node --import tsx examples/quickstart.ts IMAGE...');
  process.exit(2);
}
const tagger = await Tagger.load({ model: process.env.CLIP_DECODER_MODEL, head: process.env.CLIP_DECODER_HEAD });
const labels = ['dog', 'cat', 'food', 'fruit', 'sun', 'weather', 'music', 'heart', 'vehicle', 'face'];
for (const result of await tagger.tag(images, labels, { top: 3 })) {
  if (result.error) console.error(result.error.message);
  else console.log(result.source, result.labels.map((l) => `${l.label} ${l.probability.toFixed(3)}`).join(', '));
}
await tagger.dispose();
