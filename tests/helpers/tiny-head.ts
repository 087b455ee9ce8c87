// A CLIP-Decoder head for the tiny test CLIP, trained for a few hundred steps on emoji drawings so that its
// probabilities mean something (positives above negatives on what it saw). Written to a temporary folder.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel } from '../../src/clip/model.ts';
import { embedLabels } from '../../src/clip/prompts.ts';
import { defaultHeadConfig } from '../../src/head/config.ts';
import { TsMatmul } from '../../src/nn/matmul.ts';
import { Trainer } from '../../src/train/trainer.ts';
import { notoSvg, renderPng } from './images.ts';
import { writeFileSync } from 'node:fs';

export const TINY_CLIP = 'tests/fixtures/tiny-clip';
export const TINY_LABELS = ['dog', 'animal', 'pizza', 'food', 'sun', 'sky'];
const IMAGES: [string, string[]][] = [
  ['dog-face', ['dog', 'animal']],
  ['pizza', ['pizza', 'food']],
  ['sun', ['sun', 'sky']],
  ['cat-face', ['animal']],
];

export interface TinyHead {
  dir: string;
  images: { file: string; labels: string[] }[];
}

export async function trainTinyHead(steps = 300, modelPath = TINY_CLIP): Promise<TinyHead> {
  const dir = mkdtempSync(join(tmpdir(), 'tiny-head-'));
  const images = IMAGES.map(([name, labels]) => {
    const file = join(dir, `${name}.png`);
    writeFileSync(file, renderPng(notoSvg(name), 64));
    return { file, labels };
  });
  const model = await ClipModel.load(modelPath, { threads: 1 });
  const B = images.length,
    T = model.numTokens,
    C = model.tokenDim,
    E = model.embedDim,
    N = TINY_LABELS.length;
  const features = new Float32Array(B * T * C);
  for await (const r of model.encodeImages(images.map((i) => i.file))) {
    if (r.error) throw r.error;
    features.set(r.tokens, r.index * T * C);
  }
  const queries = await embedLabels(model, TINY_LABELS);
  const captions = await embedLabels(
    model,
    images.map((i) => i.labels.join(' and ')),
    { templates: ['a photo of {label}'] },
  );
  const targets = new Float32Array(B * N);
  images.forEach((img, b) => img.labels.forEach((l) => (targets[b * N + TINY_LABELS.indexOf(l)] = 1)));
  const config = defaultHeadConfig({ inputDim: C, queryDim: E, dModel: 32, heads: 4, ffnDim: 64, clipProjDim: 16, captionDim: E });
  const trainer = Trainer.create(config, new TsMatmul(), { totalSteps: steps, maxLr: 3e-3, emaDecay: 0, seed: 1, alpha: 0.1 });
  for (let s = 0; s < steps; s++) trainer.trainStep({ features, B, T, queries, targets, captions });
  await trainer.save(`${dir}/head`, { labels: TINY_LABELS, clipModel: modelPath, promptTemplates: ['a photo of {label}'] });
  await model.dispose();
  return { dir: join(dir, 'head'), images };
}
