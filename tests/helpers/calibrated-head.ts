// A small residual CLIP-Decoder+ head for the tiny test CLIP (random weights: no training, so it is quick) and a
// calibration for it with known weights, so that tests can recompute the fused score independently.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel } from '../../src/clip/model.ts';
import { CALIBRATION_FILE, clipFingerprint, type Calibration, writeCalibration } from '../../src/head/calibration.ts';
import { defaultHeadConfig } from '../../src/head/config.ts';
import { ClipDecoderHead } from '../../src/head/head.ts';
import { TsMatmul } from '../../src/nn/matmul.ts';
import { Rng } from '../../src/nn/rng.ts';
import { loadCheckpoint, saveCheckpoint } from '../../src/train/checkpoint.ts';
import { TINY_CLIP } from './tiny-head.ts';

/** The labels the head is "trained" on; any other label is novel. */
export const TRAINED = ['dog', 'pizza', 'sun'];
export const RESIDUAL = { scale: 7.5, bias: -2.25 };
export const FUSION = {
  trained: { global: 6, local: 0.8, bias: -1.5 },
  novel: { global: 9, local: 0.3, bias: -2.5 },
  threshold: 0.42,
};
export const PLAIN_FUSION = { trained: { global: 11, local: 0, bias: -3 }, novel: { global: 11, local: 0, bias: -3 }, threshold: 0.37 };

export interface CalibratedHead {
  /** Head folder with config.json, weights and calibration.json. */
  dir: string;
  /** The same head without calibration.json (scored by the residual rule). */
  bareDir: string;
  /** A calibration of plain CLIP (head null) for the tiny CLIP. */
  plainCalibration: string;
  fingerprint: string;
  sha256: string;
}

export function calibrationOf(fingerprint: string, head: string | null, fusion: Calibration['fusion']): Calibration {
  return {
    format: 'clip-decoder-calibration',
    version: 1,
    clipModel: { id: 'tiny-clip', fingerprint },
    head: head === null ? null : { sha256: head },
    fusion,
    fittedOn: { dataset: 'unit-test', split: 'val', images: 4, pairs: 24, note: 'known weights' },
  };
}

export async function makeCalibratedHead(): Promise<CalibratedHead> {
  const root = mkdtempSync(join(tmpdir(), 'calibrated-head-'));
  const model = await ClipModel.load(TINY_CLIP, { threads: 1 });
  const fingerprint = await clipFingerprint(model, false);
  await model.dispose();
  const config = defaultHeadConfig({
    inputDim: model.tokenDim,
    queryDim: model.embedDim,
    dModel: 16,
    heads: 2,
    ffnDim: 32,
    clipProjDim: 0,
  });
  const head = new ClipDecoderHead(config, new TsMatmul());
  head.init(new Rng(7));
  // fc's xavier init gives logits of a few tenths; scale them so the local stream visibly matters
  for (let i = 0; i < head.fc.weight.data.length; i++) head.fc.weight.data[i]! *= 4;
  head.fc.bias.data[0] = 0.5;
  const meta = {
    labels: TRAINED,
    clipModel: TINY_CLIP,
    clipFingerprint: fingerprint,
    promptTemplates: ['a photo of {label}'],
    hyperParameters: { residual: RESIDUAL },
  };
  const dir = join(root, 'head');
  const bareDir = join(root, 'bare');
  await saveCheckpoint(dir, head, meta);
  await saveCheckpoint(bareDir, head, meta);
  const { weightsSha256: sha256 } = await loadCheckpoint(dir, new TsMatmul());
  await writeCalibration(join(dir, CALIBRATION_FILE), calibrationOf(fingerprint, sha256, FUSION));
  // bare's weights file is another save (another stamp in its metadata), so its digest differs
  const plainCalibration = join(root, 'plain-calibration.json');
  await writeCalibration(plainCalibration, calibrationOf(fingerprint, null, PLAIN_FUSION));
  return { dir, bareDir, plainCalibration, fingerprint, sha256 };
}
