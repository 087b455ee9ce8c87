// What a library run's outputs were made with, as short stable strings stored in every record: a results file
// or an embeddings folder made with another model, head or label set is refused rather than mixed into.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ClipModel } from '../clip/model.ts';
import { hashFile, modelFingerprint } from '../features/extract.ts';

const short = (hex: string) => hex.slice(0, 16);

/** "<model id>@<16 hex>": the id plus a digest of the configs and both ONNX files (text embeds matter for tags). */
export async function modelIdentity(model: ClipModel, keepCls: boolean): Promise<string> {
  const h = createHash('sha256');
  h.update(await modelFingerprint(model, keepCls));
  await hashFile(model.folder.textModelPath, h);
  return `${model.id}@${short(h.digest('hex'))}`;
}

/** "<folder name>@<16 hex>" of a head checkpoint; its config.json records the weights' digests, so it stands for them. */
export function headIdentity(headDir: string | null): string {
  if (headDir === null) return 'none';
  const digest = createHash('sha256')
    .update(readFileSync(join(headDir, 'config.json')))
    .digest('hex');
  return `${basename(headDir)}@${short(digest)}`;
}

/**
 * The head identity with the calibration that scores it: "<head>+calibration@<16 hex of the file>", or the
 * head's alone without one. A calibration changes every probability, so results made with another are refused.
 */
export function scoringIdentity(headDir: string | null, calibrationPath: string | null): string {
  const head = headIdentity(headDir);
  if (calibrationPath === null) return head;
  const digest = createHash('sha256').update(readFileSync(calibrationPath)).digest('hex');
  return `${head}+calibration@${short(digest)}`;
}

/** "sha256:<16 hex>" of the label set; sorted first, since each label's probability is independent of the others. */
export function labelSetIdentity(labels: readonly string[]): string {
  const sorted = [...labels].sort();
  return `sha256:${short(createHash('sha256').update(JSON.stringify(sorted)).digest('hex'))}`;
}
