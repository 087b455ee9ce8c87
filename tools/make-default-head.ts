// node --import tsx tools/make-default-head.ts [--work .cache/experiments]
// Installs what `npm run experiments` chose as the defaults: the bundled head (models/pico-clip-decoder: the
// CLIP-Decoder+ configuration chosen on validation, retrained on train + validation, with its calibration.json)
// when it beat plain CLIP on validation, and always plain CLIP's calibration (models/pico-clip/calibration.json,
// used by `--head none`). Both calibrations were fitted on EmojiScenes validation by the experiments
// (bundled.json); the model card's numbers are the experiments' test numbers.
import { cpSync, existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ClipModel } from '../src/clip/model.ts';
import type { Fusion } from '../src/head/fusion.ts';
import {
  CALIBRATION_FILE,
  CALIBRATION_FORMAT,
  CALIBRATION_VERSION,
  clipFingerprint,
  headDigest,
  writeCalibration,
} from '../src/head/calibration.ts';

const { values } = parseArgs({
  options: { work: { type: 'string', default: '.cache/experiments' }, model: { type: 'string', default: 'models/pico-clip' } },
});
const work = values.work!;
const bundled = JSON.parse(readFileSync(join(work, 'bundled.json'), 'utf8')) as {
  method: string;
  shipped: { dir: string; fusion: Fusion } | null;
  plain: { fusion: Fusion };
  fittedOn: { dataset: string; split: string; images: number; labels: number };
};
const model = await ClipModel.load(values.model!);
const clip = { id: model.id, fingerprint: await clipFingerprint(model, false) };
const fittedOn = (what: string) => ({
  dataset: bundled.fittedOn.dataset,
  split: bundled.fittedOn.split,
  images: bundled.fittedOn.images,
  pairs: bundled.fittedOn.images * bundled.fittedOn.labels,
  by: `npm run experiments (tools/experiments.ts): ${what}`,
});
await writeCalibration(join(values.model!, CALIBRATION_FILE), {
  format: CALIBRATION_FORMAT,
  version: CALIBRATION_VERSION,
  clipModel: clip,
  head: null,
  fusion: bundled.plain.fusion,
  fittedOn: fittedOn('plain CLIP, logistic regression of the cosine'),
});
console.log(`wrote ${join(values.model!, CALIBRATION_FILE)}`);
if (!bundled.shipped) {
  console.log(`no head beat plain CLIP on validation (${bundled.method}): models/pico-clip-decoder left as it is`);
} else {
  const src = bundled.shipped.dir;
  const out = 'models/pico-clip-decoder';
  const tmp = `${out}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  cpSync(join(src, 'best'), tmp, { recursive: true });
  for (const f of ['training-log.json', 'training-curves.svg']) if (existsSync(join(src, f))) cpSync(join(src, f), join(tmp, f));
  if (existsSync(join(out, 'README.md'))) cpSync(join(out, 'README.md'), join(tmp, 'README.md'));
  await writeCalibration(join(tmp, CALIBRATION_FILE), {
    format: CALIBRATION_FORMAT,
    version: CALIBRATION_VERSION,
    clipModel: clip,
    head: { sha256: await headDigest(tmp) },
    fusion: bundled.shipped.fusion,
    fittedOn: fittedOn(`${bundled.method}, fitted for its seed-0 selection run`),
  });
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
  console.log(`installed ${bundled.method} into ${out} (README.md kept: update its numbers from docs/RESULTS.md)`);
}
await model.dispose();
