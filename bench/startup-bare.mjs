// The baseline of bench/startup.ts: the least a process must do to tag one image with the bundled model, in
// plain Node (no TypeScript, no library): load onnxruntime-node and sharp, decode and resize the image, create
// the two ONNX sessions and run each once (4 short token sequences stand in for 4 tokenised labels).
//   node bench/startup-bare.mjs IMAGE [MODEL_DIR]
import { availableParallelism } from 'node:os';
import ort from 'onnxruntime-node';
import sharp from 'sharp';

const [image, dir = new URL('../models/pico-clip', import.meta.url).pathname] = process.argv.slice(2);
const S = 64; // the bundled pico-CLIP's input size
const options = {
  intraOpNumThreads: availableParallelism(),
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  extra: { session: { intra_op: { allow_spinning: '0' } } },
};
const [vision, text, rgb] = await Promise.all([
  ort.InferenceSession.create(`${dir}/onnx/vision_model.onnx`, options),
  ort.InferenceSession.create(`${dir}/onnx/text_model.onnx`, options),
  sharp(image).flatten({ background: '#fff' }).resize(S, S, { fit: 'cover', kernel: 'cubic' }).removeAlpha().raw().toBuffer(),
]);
const pixels = new Float32Array(3 * S * S);
for (let c = 0; c < 3; c++) for (let i = 0; i < S * S; i++) pixels[c * S * S + i] = (rgb[i * 3 + c] / 255 - 0.45) / 0.27;
const N = 4,
  L = 6;
const ids = new BigInt64Array(N * L);
for (let n = 0; n < N; n++) for (let j = 0; j < L; j++) ids[n * L + j] = BigInt(j === 0 ? 5998 : j === L - 1 ? 5999 : 10 + n * 7 + j);
const mask = new BigInt64Array(N * L).fill(1n);
const v = await vision.run({ pixel_values: new ort.Tensor('float32', pixels, [1, 3, S, S]) });
const t = await text.run({ input_ids: new ort.Tensor('int64', ids, [N, L]), attention_mask: new ort.Tensor('int64', mask, [N, L]) });
process.stdout.write(`${v.image_embeds.dims} ${t.text_embeds.dims}\n`);
