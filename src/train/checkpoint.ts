// Head checkpoints: a folder holding config.json and the weights as safetensors (DESIGN.md "Formats").
//
//   <dir>/config.json                  architecture, labels, CLIP model id, prompt templates, hyper-parameters,
//                                      metrics, format version, and the names of the files below
//   <dir>/model-<stamp>.safetensors    every parameter and buffer, PyTorch names and layouts, F32
//   <dir>/train-<stamp>.safetensors    (training checkpoints) Adam moments and EMA weights
//
// Atomicity: each save writes new, uniquely stamped data files first (each one atomically), then replaces
// config.json atomically; that rename is the commit point. A process killed at any moment leaves either the
// old config with its old files or the new config with its new files, never a mismatched pair; files that
// no config names any more are removed after the commit (or by the next save). The stamp is also written
// into each data file's metadata and checked on load.
//
// Integrity: config.json records the SHA-256 of each data file and of each tensor's bytes ("digests"); a load
// verifies them, so flipped bytes are refused (CHECKPOINT_CORRUPT, naming the file and tensor) instead of being
// used. Checkpoints saved before digests existed load with a warning.
import { createHash } from 'node:crypto';
import { open, readFile, readdir, mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { writeFileAtomic } from '../util/fs.ts';
import { ClipDecoderHead } from '../head/head.ts';
import { validateHeadConfig, type HeadConfig } from '../head/config.ts';
import type { MatmulBackend } from '../nn/matmul.ts';
import type { RngState } from '../nn/rng.ts';
import { decodeSafetensors, encodeSafetensors, type StTensor } from './safetensors.ts';

export const CHECKPOINT_FORMAT = 'clip-decoder-head';
export const CHECKPOINT_FORMAT_VERSION = 1;

/** What a checkpoint records besides the weights. */
export interface CheckpointMeta {
  /** The labels the head was trained on (closed-set: the classes, in logit order). */
  labels: string[];
  /** Id or path of the CLIP model whose features and text embeddings the head expects. */
  clipModel: string;
  /**
   * Fingerprint of that CLIP model (src/head/calibration.ts clipFingerprint: configs + vision weights + CLS
   * option); a Tagger refuses the head with another model. Absent in checkpoints saved before it existed.
   */
  clipFingerprint?: string;
  /** Prompt templates used for label queries, e.g. ["a photo of {label}"]. */
  promptTemplates: string[];
  hyperParameters?: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  /** Anything else the caller wants to keep (free-form JSON). */
  extra?: Record<string, unknown>;
}

/** Everything needed to continue training exactly where it stopped. */
export interface TrainingState {
  /** Optimiser steps taken. */
  step: number;
  /** State of the dropout RNG. */
  rng: RngState;
  /** Trainer options (schedule, optimiser, loss weights...), JSON. */
  options: Record<string, unknown>;
  /** Adam moments by parameter name. */
  adamM: Map<string, Float32Array>;
  adamV: Map<string, Float32Array>;
  /** EMA weights by parameter name (absent when EMA is off). */
  ema?: Map<string, Float32Array>;
}

interface ConfigJson {
  format: string;
  formatVersion: number;
  stamp: string;
  weights: string;
  architecture: HeadConfig;
  labels: string[];
  clipModel: string;
  clipFingerprint?: string;
  promptTemplates: string[];
  hyperParameters: Record<string, unknown>;
  metrics: Record<string, unknown>;
  extra?: Record<string, unknown>;
  training?: { state: string; step: number; rng: RngState; options: Record<string, unknown> };
  /** SHA-256 (hex) of each data file, and of each tensor's raw bytes in it, by file name. */
  digests?: Record<string, FileDigests>;
  savedAt: string;
}

export interface FileDigests {
  sha256: string;
  tensors: Record<string, string>;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function bytesOf(data: Float32Array | Float64Array | Uint8Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Encodes tensors to a safetensors file and digests it (whole file + each tensor). */
function encodeWithDigests(
  entries: Array<[string, StTensorLike]>,
  fileMeta: Record<string, string>,
): { bytes: Uint8Array; digests: FileDigests } {
  const bytes = encodeSafetensors(entries, fileMeta);
  const tensors: Record<string, string> = {};
  for (const [name, t] of entries) tensors[name] = sha256(bytesOf(t.data));
  return { bytes, digests: { sha256: sha256(bytes), tensors } };
}

/** The digests of an existing checkpoint's data files, as saveCheckpoint records them (tools use it to add digests to old checkpoints). */
export async function digestCheckpointFiles(dir: string, files: readonly string[]): Promise<Record<string, FileDigests>> {
  const out: Record<string, FileDigests> = {};
  for (const f of files) {
    const bytes = await readFile(join(dir, f));
    const { tensors } = decodeSafetensors(bytes, join(dir, f));
    out[f] = { sha256: sha256(bytes), tensors: Object.fromEntries([...tensors].map(([n, t]) => [n, sha256(bytesOf(t.data))])) };
  }
  return out;
}

let stampCounter = 0;
function newStamp(): string {
  // unique per save within this process and across processes (time, pid, counter); not a random draw
  stampCounter = (stampCounter + 1) % 1296;
  return `${Date.now().toString(36)}${process.pid.toString(36)}${stampCounter.toString(36).padStart(2, '0')}`;
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // some filesystems refuse to fsync a directory; the renames are still atomic
  }
}

/** Writes a checkpoint into `dir` (created if needed), replacing any previous one there atomically. */
export async function saveCheckpoint(dir: string, head: ClipDecoderHead, meta: CheckpointMeta, training?: TrainingState): Promise<void> {
  validateMeta(meta, head.config, dir);
  await mkdir(dir, { recursive: true });
  const stamp = newStamp();
  const weights = `model-${stamp}.safetensors`;
  const fileMeta = { format: CHECKPOINT_FORMAT, stamp };
  const model = encodeWithDigests(
    head.params.list.map((p) => [p.name, p] as [string, StTensorLike]),
    fileMeta,
  );
  await writeFileAtomic(join(dir, weights), model.bytes);
  const digests: Record<string, FileDigests> = { [weights]: model.digests };
  let trainingJson: ConfigJson['training'];
  if (training) {
    const state = `train-${stamp}.safetensors`;
    const entries: Array<[string, StTensorLike]> = [];
    for (const p of head.params.trainable) {
      entries.push([`adam.m.${p.name}`, { shape: p.shape, data: need(training.adamM, p.name) }]);
      entries.push([`adam.v.${p.name}`, { shape: p.shape, data: need(training.adamV, p.name) }]);
    }
    if (training.ema)
      for (const p of head.params.list) entries.push([`ema.${p.name}`, { shape: p.shape, data: need(training.ema, p.name) }]);
    const enc = encodeWithDigests(entries, fileMeta);
    await writeFileAtomic(join(dir, state), enc.bytes);
    digests[state] = enc.digests;
    trainingJson = { state, step: training.step, rng: [...training.rng] as RngState, options: training.options };
  }
  const cfg: ConfigJson = {
    format: CHECKPOINT_FORMAT,
    formatVersion: CHECKPOINT_FORMAT_VERSION,
    stamp,
    weights,
    architecture: head.config,
    labels: meta.labels,
    clipModel: meta.clipModel,
    ...(meta.clipFingerprint !== undefined ? { clipFingerprint: meta.clipFingerprint } : {}),
    promptTemplates: meta.promptTemplates,
    hyperParameters: meta.hyperParameters ?? {},
    metrics: meta.metrics ?? {},
    ...(meta.extra ? { extra: meta.extra } : {}),
    ...(trainingJson ? { training: trainingJson } : {}),
    digests,
    savedAt: new Date().toISOString(),
  };
  await fsyncDir(dir);
  await writeFileAtomic(join(dir, 'config.json'), `${JSON.stringify(cfg, null, 1)}\n`); // commit point
  await fsyncDir(dir);
  // remove data files no config names any more (earlier saves, or ones orphaned by a crash)
  const keep = new Set([weights, trainingJson?.state]);
  for (const f of await readdir(dir)) {
    if (/^(model|train)-[0-9a-z]+\.safetensors$/.test(f) && !keep.has(f)) await unlink(join(dir, f)).catch(() => {});
    // temporaries of writeFileAtomic left by a killed writer (alive writers' are left alone)
    const tmp = /^\.(?:(?:model|train)-[0-9a-z]+\.safetensors|config\.json)\.(\d+)\.\d+\.tmp$/.exec(f);
    if (tmp && !pidAlive(Number(tmp[1]))) await unlink(join(dir, f)).catch(() => {});
  }
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

type StTensorLike = { shape: readonly number[]; data: Float32Array };

function need(m: Map<string, Float32Array>, name: string): Float32Array {
  const v = m.get(name);
  if (!v) throw new Error(`training state lacks ${name}`);
  return v;
}

function validateMeta(meta: CheckpointMeta, cfg: HeadConfig, where: string): void {
  const bad = (msg: string, subject: string) => {
    throw new ClipDecoderError('INPUT_INVALID', `checkpoint ${where}: ${msg}`, subject);
  };
  if (!Array.isArray(meta.labels) || meta.labels.length === 0 || !meta.labels.every((l) => typeof l === 'string'))
    bad('labels must be a non-empty list of strings', 'labels');
  if (new Set(meta.labels).size !== meta.labels.length) bad('labels contain duplicates', 'labels');
  if (cfg.mode === 'closed-set' && meta.labels.length !== cfg.numClasses)
    bad(`a closed-set head has ${cfg.numClasses} classes but ${meta.labels.length} labels were given`, 'labels');
  if (typeof meta.clipModel !== 'string') bad('clipModel must be a string', 'clipModel');
  if (meta.clipFingerprint !== undefined && (typeof meta.clipFingerprint !== 'string' || !/^[0-9a-f]{64}$/.test(meta.clipFingerprint)))
    bad('clipFingerprint must be a SHA-256 in hex', 'clipFingerprint');
  if (!Array.isArray(meta.promptTemplates) || !meta.promptTemplates.every((t) => typeof t === 'string'))
    bad('promptTemplates must be a list of strings', 'promptTemplates');
}

export interface LoadedCheckpoint {
  head: ClipDecoderHead;
  meta: CheckpointMeta;
  /** Present when the checkpoint was saved with training state and `withTraining` was asked for. */
  training?: TrainingState;
  formatVersion: number;
  savedAt: string;
  /**
   * SHA-256 (hex) of the weights file: the digest config.json records, verified on load (computed from the
   * bytes for a checkpoint saved before digests existed). A calibration names its head by it.
   */
  weightsSha256: string;
}

/**
 * Reads and validates a checkpoint folder: format and version, architecture, label list, the weights file's
 * stamp, every parameter's presence, shape, dtype and finiteness. Every failure is CHECKPOINT_INVALID and
 * names the file at fault.
 */
export interface LoadCheckpointOptions {
  /** Also read the training state (Adam moments, EMA, step, RNG) to resume a run. */
  withTraining?: boolean;
  /** Called when the checkpoint has no digests to verify (saved by an older version); default: process.emitWarning. */
  onWarning?: (message: string) => void;
}

export async function loadCheckpoint(dir: string, backend: MatmulBackend, opts: LoadCheckpointOptions = {}): Promise<LoadedCheckpoint> {
  const cfgPath = join(dir, 'config.json');
  const bad = (msg: string, subject = cfgPath): never => {
    throw new ClipDecoderError('CHECKPOINT_INVALID', msg, subject);
  };
  let text: string;
  try {
    text = await readFile(cfgPath, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ClipDecoderError(
      code === 'ENOENT' ? 'MODEL_NOT_FOUND' : 'CHECKPOINT_INVALID',
      `no readable checkpoint at ${dir}: ${cfgPath} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`,
      cfgPath,
      { cause: e },
    );
  }
  let cfg: ConfigJson;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    return bad(`${cfgPath} is not valid JSON (${(e as Error).message})`);
  }
  if (cfg?.format !== CHECKPOINT_FORMAT) bad(`${cfgPath} is not a clip-decoder head checkpoint (format '${cfg?.format}')`);
  if (cfg.formatVersion !== CHECKPOINT_FORMAT_VERSION) {
    bad(
      `${cfgPath} has format version ${cfg.formatVersion}; this version of clip-decoder reads version ${CHECKPOINT_FORMAT_VERSION}${cfg.formatVersion > CHECKPOINT_FORMAT_VERSION ? ' (upgrade clip-decoder)' : ''}`,
    );
  }
  try {
    validateHeadConfig(cfg.architecture);
  } catch (e) {
    bad(`${cfgPath}: invalid architecture: ${(e as Error).message}`);
  }
  const meta: CheckpointMeta = {
    labels: cfg.labels,
    clipModel: cfg.clipModel,
    ...(cfg.clipFingerprint !== undefined ? { clipFingerprint: cfg.clipFingerprint } : {}),
    promptTemplates: cfg.promptTemplates,
    hyperParameters: cfg.hyperParameters ?? {},
    metrics: cfg.metrics ?? {},
    ...(cfg.extra ? { extra: cfg.extra } : {}),
  };
  try {
    validateMeta(meta, cfg.architecture, dir);
  } catch (e) {
    bad(`${cfgPath}: ${(e as Error).message}`);
  }
  if (typeof cfg.weights !== 'string' || !/^model-[0-9a-z]+\.safetensors$/.test(cfg.weights)) bad(`${cfgPath} names no valid weights file`);
  if (cfg.digests === undefined) {
    const msg = `${cfgPath} records no SHA-256 digests (saved by an older clip-decoder), so its weights cannot be checked for corruption; save it again (e.g. node --import tsx tools/checkpoint-digests.ts ${dir}) to add them`;
    (opts.onWarning ?? ((m: string) => process.emitWarning(m, { code: 'CLIP_DECODER_NO_DIGESTS' })))(msg);
  } else if (typeof cfg.digests !== 'object' || cfg.digests === null) {
    bad(`${cfgPath}: digests must be an object`);
  }
  const digestsOf = (file: string): FileDigests | undefined => {
    if (!cfg.digests) return undefined;
    const d = cfg.digests[file];
    if (!d || typeof d.sha256 !== 'string' || typeof d.tensors !== 'object' || d.tensors === null)
      bad(`${cfgPath} records no digests for ${file}`);
    return d;
  };
  const head = new ClipDecoderHead(cfg.architecture, backend);
  const { tensors: weights, sha256: weightsSha256 } = await readTensors(join(dir, cfg.weights), cfg.stamp, digestsOf(cfg.weights));
  for (const p of head.params.list) {
    const t = takeTensor(weights, p.name, p.shape, join(dir, cfg.weights));
    p.data.set(t);
  }
  if (weights.size > 0)
    bad(`${join(dir, cfg.weights)} has unexpected tensors: ${[...weights.keys()].slice(0, 5).join(', ')}`, join(dir, cfg.weights));
  head.trainedLabels = [...cfg.labels];
  head.version++;
  const out: LoadedCheckpoint = { head, meta, formatVersion: cfg.formatVersion, savedAt: cfg.savedAt, weightsSha256 };
  if (opts.withTraining) {
    const tr = cfg.training;
    if (!tr) bad(`${cfgPath} holds no training state (it was saved for inference); start a new run instead of resuming`);
    const file = join(dir, tr!.state);
    if (!/^train-[0-9a-z]+\.safetensors$/.test(tr!.state)) bad(`${cfgPath} names no valid training-state file`);
    if (!Number.isInteger(tr!.step) || tr!.step < 0) bad(`${cfgPath}: training.step must be an integer ≥ 0`);
    if (!Array.isArray(tr!.rng) || tr!.rng.length !== 4 || !tr!.rng.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32))
      bad(`${cfgPath}: training.rng must be four uint32 values`);
    const { tensors: ts } = await readTensors(file, cfg.stamp, digestsOf(tr!.state));
    const adamM = new Map<string, Float32Array>(),
      adamV = new Map<string, Float32Array>();
    for (const p of head.params.trainable) {
      adamM.set(p.name, takeTensor(ts, `adam.m.${p.name}`, p.shape, file));
      adamV.set(p.name, takeTensor(ts, `adam.v.${p.name}`, p.shape, file));
    }
    let ema: Map<string, Float32Array> | undefined;
    if ([...ts.keys()].some((k) => k.startsWith('ema.'))) {
      ema = new Map();
      for (const p of head.params.list) ema.set(p.name, takeTensor(ts, `ema.${p.name}`, p.shape, file));
    }
    if (ts.size > 0) bad(`${file} has unexpected tensors: ${[...ts.keys()].slice(0, 5).join(', ')}`, file);
    out.training = { step: tr!.step, rng: tr!.rng, options: tr!.options ?? {}, adamM, adamV, ...(ema ? { ema } : {}) };
  }
  return out;
}

async function readTensors(
  file: string,
  stamp: string,
  digests: FileDigests | undefined,
): Promise<{ tensors: Map<string, StTensor>; sha256: string }> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new ClipDecoderError(
      'CHECKPOINT_INVALID',
      `checkpoint file ${file} cannot be read (${(e as NodeJS.ErrnoException).code}); the checkpoint folder is incomplete`,
      file,
      { cause: e },
    );
  }
  const digest = sha256(bytes);
  if (digests && digest !== digests.sha256) throw corruption(file, bytes, digests, stamp);
  const { tensors, metadata } = decodeSafetensors(bytes, file);
  if (metadata.stamp !== stamp) throw otherSave(file, metadata.stamp, stamp);
  return { tensors, sha256: digest };
}

/** The error for a data file whose SHA-256 differs from config.json's: names the damaged tensors, or the header. */
function corruption(file: string, bytes: Uint8Array, digests: FileDigests, stamp: string): ClipDecoderError {
  const fix = 'the file changed after it was saved; restore the checkpoint from a copy or train it again';
  let decoded: ReturnType<typeof decodeSafetensors>;
  try {
    decoded = decodeSafetensors(bytes, file);
  } catch (e) {
    return new ClipDecoderError(
      'CHECKPOINT_CORRUPT',
      `${file} is corrupt (its SHA-256 differs from the one in config.json): ${(e as Error).message.replace(`${file} is `, '')}; ${fix}`,
      file,
    );
  }
  if (decoded.metadata.stamp !== stamp) return otherSave(file, decoded.metadata.stamp, stamp);
  const damaged = [...decoded.tensors].filter(([n, t]) => digests.tensors[n] !== sha256(bytesOf(t.data))).map(([n]) => n);
  const what =
    damaged.length === 0
      ? 'its header changed (every tensor matches its digest)'
      : `tensor${damaged.length > 1 ? 's' : ''} ${damaged.slice(0, 5).join(', ')}${damaged.length > 5 ? ` and ${damaged.length - 5} more` : ''} ${damaged.length > 1 ? 'differ' : 'differs'} from the SHA-256 recorded in config.json`;
  return new ClipDecoderError('CHECKPOINT_CORRUPT', `${file} is corrupt: ${what}; ${fix}`, file);
}

function otherSave(file: string, found: string | undefined, stamp: string): ClipDecoderError {
  return new ClipDecoderError(
    'CHECKPOINT_INVALID',
    `${file} belongs to another save (stamp '${found}', config.json expects '${stamp}'); do not mix files of different checkpoints`,
    file,
  );
}

/** Removes `name` from `m` and returns its data after checking dtype, shape and finiteness. */
function takeTensor(m: Map<string, StTensor>, name: string, shape: readonly number[], file: string): Float32Array {
  const t = m.get(name);
  if (!t) throw new ClipDecoderError('CHECKPOINT_INVALID', `${file} lacks tensor ${name}`, file);
  m.delete(name);
  if (t.dtype !== 'F32') throw new ClipDecoderError('CHECKPOINT_INVALID', `${file}: tensor ${name} is ${t.dtype}, F32 expected`, file);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new ClipDecoderError(
      'CHECKPOINT_INVALID',
      `${file}: tensor ${name} has shape [${t.shape}], the architecture in config.json needs [${shape}]`,
      file,
    );
  }
  const data = t.data as Float32Array;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]))
      throw new ClipDecoderError('CHECKPOINT_INVALID', `${file}: tensor ${name} contains a non-finite value at index ${i}`, file);
  }
  return data;
}
