// The calibration file of CLIP-Decoder+ scoring (src/head/fusion.ts): the fused weights fitted on validation,
// the default decision threshold, and what they were fitted for. A head folder may hold one as
// `calibration.json` (loaded with the head); for plain CLIP (no head) a CLIP model folder may hold one, or a
// file is named (`--calibration FILE`, TaggerOptions.calibration).
//
//   {
//     "format": "clip-decoder-calibration", "version": 1,
//     "clipModel": {"id": "pico-clip", "fingerprint": "<sha256 hex: clipFingerprint(model, keepCls)>"},
//     "head": {"sha256": "<sha256 hex of the head's weights file, as its config.json records it>"} | null,
//     "fusion": {"trained": {"global", "local", "bias"}, "novel": {"global", "local", "bias"}, "threshold"},
//     "fittedOn": {"dataset", "split", "images", "pairs", ...free-form}
//   }
//
// A calibration is only right for the model and head it was fitted with, so reading one checks both and
// refuses another's (CALIBRATION_MISMATCH, naming both); a malformed file is refused naming the field
// (CALIBRATION_INVALID). `head: null` is a calibration of plain CLIP (w_local = 0 in both weight sets).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClipModel } from '../clip/model.ts';
import { ClipDecoderError } from '../errors.ts';
import { hashFile, modelFingerprint } from '../features/extract.ts';
import type { CheckpointMeta } from '../train/checkpoint.ts';
import { writeFileAtomic } from '../util/fs.ts';
import type { Fusion, StreamWeights } from './fusion.ts';

export const CALIBRATION_FORMAT = 'clip-decoder-calibration';
export const CALIBRATION_VERSION = 1;
/** The file name a head folder (or, for plain CLIP, a CLIP model folder) carries its calibration under. */
export const CALIBRATION_FILE = 'calibration.json';

export interface Calibration {
  format: typeof CALIBRATION_FORMAT;
  version: typeof CALIBRATION_VERSION;
  /** The CLIP model the scores were computed with: its id (for messages) and fingerprint (what is checked). */
  clipModel: { id: string; fingerprint: string };
  /** The head: SHA-256 of its weights file; null for plain CLIP. */
  head: { sha256: string } | null;
  fusion: Fusion;
  /** Where the weights were fitted: dataset, split, image and (image, label) pair counts, anything else. */
  fittedOn: { dataset: string; split: string; images: number; pairs: number; [key: string]: unknown };
}

/** What a calibration must have been fitted for. */
export interface CalibrationExpectation {
  /** clipFingerprint of the loaded model. */
  modelFingerprint: string;
  /** The loaded model's id, for messages. */
  modelId?: string;
  /** SHA-256 of the loaded head's weights file (LoadedCheckpoint.weightsSha256); null for plain CLIP. */
  headDigest: string | null;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The fingerprint a calibration (and a checkpoint's clipFingerprint) records: modelFingerprint of the model's
 * configs and fp32 vision weights with the head's CLS option (false for plain CLIP). The fp32 file stands for
 * the folder whatever --dtype runs, so a calibration fitted in fp32 serves its fp16 / q8 variants too.
 */
export async function clipFingerprint(model: ClipModel, keepCls: boolean): Promise<string> {
  const fp32 = join(model.folder.dir, 'onnx', 'vision_model.onnx');
  return modelFingerprint(model, keepCls, existsSync(fp32) ? fp32 : model.folder.visionModelPath);
}

/**
 * SHA-256 of a head checkpoint's weights file without loading it: the digest its config.json records, or the
 * file's own for a checkpoint saved before digests existed. Equal to LoadedCheckpoint.weightsSha256.
 */
export async function headDigest(headDir: string): Promise<string> {
  const cfgPath = join(headDir, 'config.json');
  let cfg: { weights?: unknown; digests?: Record<string, { sha256?: unknown }> };
  try {
    cfg = JSON.parse(await readFile(cfgPath, 'utf8'));
  } catch (e) {
    throw new ClipDecoderError('CHECKPOINT_INVALID', `${cfgPath}: cannot read the head's config (${(e as Error).message})`, cfgPath, {
      cause: e,
    });
  }
  if (typeof cfg.weights !== 'string') throw new ClipDecoderError('CHECKPOINT_INVALID', `${cfgPath} names no weights file`, cfgPath);
  const recorded = cfg.digests?.[cfg.weights]?.sha256;
  if (typeof recorded === 'string') return recorded;
  const h = createHash('sha256');
  await hashFile(join(headDir, cfg.weights), h);
  return h.digest('hex');
}

/** Checks every field of a parsed calibration; `where` (the file) is named in every message. */
export function validateCalibration(value: unknown, where: string): Calibration {
  const bad = (field: string, what: string): never => {
    throw new ClipDecoderError('CALIBRATION_INVALID', `calibration ${where}: ${field} ${what}`, where);
  };
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const finite = (v: unknown, field: string): number =>
    typeof v === 'number' && Number.isFinite(v) ? v : bad(field, `must be a finite number, got ${JSON.stringify(v)}`);
  if (!isObj(value)) return bad('the file', 'must hold a JSON object');
  if (value.format !== CALIBRATION_FORMAT) bad('format', `must be "${CALIBRATION_FORMAT}", got ${JSON.stringify(value.format)}`);
  if (value.version !== CALIBRATION_VERSION)
    bad(
      'version',
      `is ${JSON.stringify(value.version)}; this clip-decoder reads version ${CALIBRATION_VERSION}` +
        (typeof value.version === 'number' && value.version > CALIBRATION_VERSION ? ' (upgrade clip-decoder)' : ''),
    );
  const cm = value.clipModel;
  if (!isObj(cm)) return bad('clipModel', 'must be an object {id, fingerprint}');
  if (typeof cm.id !== 'string' || cm.id === '') bad('clipModel.id', 'must be a non-empty string');
  if (typeof cm.fingerprint !== 'string' || !HEX64.test(cm.fingerprint)) bad('clipModel.fingerprint', 'must be a SHA-256 in hex');
  const head = value.head;
  if (head !== null) {
    if (!isObj(head)) bad('head', 'must be {sha256} or null (plain CLIP)');
    if (typeof (head as Record<string, unknown>).sha256 !== 'string' || !HEX64.test((head as { sha256: string }).sha256))
      bad('head.sha256', 'must be a SHA-256 in hex');
  }
  const f = value.fusion;
  if (!isObj(f)) return bad('fusion', 'must be an object {trained, novel, threshold}');
  const weights = (key: 'trained' | 'novel'): StreamWeights => {
    const w = f[key];
    if (!isObj(w)) return bad(`fusion.${key}`, 'must be an object {global, local, bias}');
    const out = {
      global: finite(w.global, `fusion.${key}.global`),
      local: finite(w.local, `fusion.${key}.local`),
      bias: finite(w.bias, `fusion.${key}.bias`),
    };
    if (head === null && out.local !== 0)
      bad(`fusion.${key}.local`, `must be 0 in a calibration of plain CLIP (head null), got ${out.local}`);
    return out;
  };
  const trained = weights('trained');
  const novel = weights('novel');
  const threshold = finite(f.threshold, 'fusion.threshold');
  if (!(threshold > 0 && threshold < 1)) bad('fusion.threshold', `must be a probability in (0, 1), got ${threshold}`);
  const on = value.fittedOn;
  if (!isObj(on)) return bad('fittedOn', 'must be an object {dataset, split, images, pairs, ...}');
  if (typeof on.dataset !== 'string' || on.dataset === '') bad('fittedOn.dataset', 'must be a non-empty string');
  if (typeof on.split !== 'string' || on.split === '') bad('fittedOn.split', 'must be a non-empty string');
  for (const k of ['images', 'pairs'] as const)
    if (!Number.isInteger(on[k]) || (on[k] as number) <= 0)
      bad(`fittedOn.${k}`, `must be a positive integer, got ${JSON.stringify(on[k])}`);
  return {
    format: CALIBRATION_FORMAT,
    version: CALIBRATION_VERSION,
    clipModel: { id: cm.id as string, fingerprint: cm.fingerprint as string },
    head: head === null ? null : { sha256: (head as { sha256: string }).sha256 },
    fusion: { trained, novel, threshold },
    fittedOn: on as Calibration['fittedOn'],
  };
}

/** Refuses a calibration fitted for another CLIP model or head than `expect`, naming both. */
export function checkCalibration(cal: Calibration, expect: CalibrationExpectation, where: string): void {
  const mismatch = (msg: string): never => {
    throw new ClipDecoderError('CALIBRATION_MISMATCH', `calibration ${where} ${msg}`, where);
  };
  if (cal.clipModel.fingerprint !== expect.modelFingerprint) {
    const loaded = expect.modelId
      ? `${expect.modelId} (fingerprint ${expect.modelFingerprint.slice(0, 12)}…)`
      : `fingerprint ${expect.modelFingerprint.slice(0, 12)}…`;
    mismatch(
      `was fitted for CLIP model ${cal.clipModel.id} (fingerprint ${cal.clipModel.fingerprint.slice(0, 12)}…) but the loaded model is ${loaded}: ` +
        'fit a calibration for this model or pass the matching --model',
    );
  }
  const want = cal.head?.sha256 ?? null;
  if (want === expect.headDigest) return;
  if (want === null)
    mismatch(
      `was fitted for plain CLIP (head null) but a head is loaded (sha ${expect.headDigest!.slice(0, 12)}…): use it with --head none`,
    );
  if (expect.headDigest === null) mismatch(`was fitted for a head (sha ${want!.slice(0, 12)}…) but plain CLIP (--head none) is loaded`);
  mismatch(
    `was fitted for head sha ${want!.slice(0, 12)}… but the head is sha ${expect.headDigest!.slice(0, 12)}…: ` +
      'the head changed since it was calibrated; fit its calibration again',
  );
}

/** Reads, validates and checks a calibration file against the loaded model and head. */
export async function readCalibration(path: string, expect: CalibrationExpectation): Promise<Calibration> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ClipDecoderError(
      code === 'ENOENT' ? 'MODEL_NOT_FOUND' : 'CALIBRATION_INVALID',
      `calibration ${path}: ${code === 'ENOENT' ? 'no such file' : `cannot be read (${code})`}`,
      path,
      { cause: e },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ClipDecoderError('CALIBRATION_INVALID', `calibration ${path}: not valid JSON (${(e as Error).message})`, path, { cause: e });
  }
  const cal = validateCalibration(json, path);
  checkCalibration(cal, expect, path);
  return cal;
}

/** Writes a calibration atomically (validated first, so a bad one is never written). */
export async function writeCalibration(path: string, cal: Calibration): Promise<void> {
  const valid = validateCalibration(cal, path);
  await writeFileAtomic(path, `${JSON.stringify(valid, null, 1)}\n`);
}

/**
 * A residual head's scoring without a calibration, as it was trained: head logit + scale · cos + bias, i.e. the
 * fusion weights {global: scale, local: 1, bias} for every label. Undefined for a head that is not residual
 * (no hyperParameters.residual); a malformed record is refused.
 */
export function residualWeights(meta: CheckpointMeta, headDir: string): Pick<Fusion, 'trained' | 'novel'> | undefined {
  const r = meta.hyperParameters?.residual as { scale?: unknown; bias?: unknown } | undefined | null;
  if (r === undefined || r === null) return undefined;
  if (typeof r !== 'object' || !Number.isFinite(r.scale) || !Number.isFinite(r.bias)) {
    throw new ClipDecoderError(
      'CHECKPOINT_INVALID',
      `${join(headDir, 'config.json')}: hyperParameters.residual must be {scale, bias} (finite numbers), got ${JSON.stringify(r)}`,
      headDir,
    );
  }
  const w = { global: r.scale as number, local: 1, bias: r.bias as number };
  return { trained: w, novel: { ...w } };
}
