// The scale s and bias b that turn a cosine into a plain (head-less) logit, s·cos(image, label) + b, and so a
// probability sigmoid(s·cos + b). SigLIP is trained with exactly this sigmoid, so its own s and b give
// calibrated, independent probabilities. They are weights of the full model, not of the two towers, so they
// are read from (in order): the caller's options; model.safetensors in the folder (HF names logit_scale, stored
// as log s, and logit_bias; only the header and the two scalars are read); onnx/model.onnx, run once on two
// texts and one image to solve s and b from its logits. CLIP has no bias: its s (the softmax temperature)
// comes from the same places, else exp(config logit_scale_init_value), and b = 0 unless a calibration gives one:
// then the probabilities rank labels correctly but are not calibrated.
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { fromFloat16Bits } from './float16.ts';

export interface LogitParams {
  scale: number;
  bias: number;
  /** Where they came from, for reports: "options", "model.safetensors", "onnx/model.onnx", "config.json". */
  source: string;
}

const HEADER_LIMIT = 100 * 1024 * 1024;

/** logit_scale and logit_bias from a safetensors file, reading only its header and those two tensors. */
export async function readLogitTensors(path: string): Promise<{ logitScale?: number; logitBias?: number }> {
  const fh = await open(path, 'r');
  try {
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const hlen = Number(lenBuf.readBigUInt64LE(0));
    if (hlen <= 0 || hlen > HEADER_LIMIT)
      throw new ClipDecoderError('MODEL_INVALID', `${path}: not a safetensors file (header length ${hlen})`, path);
    const head = Buffer.alloc(hlen);
    await fh.read(head, 0, hlen, 8);
    let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    try {
      header = JSON.parse(head.toString('utf8'));
    } catch (e) {
      throw new ClipDecoderError('MODEL_INVALID', `${path}: safetensors header is not JSON`, path, { cause: e });
    }
    const scalar = async (name: string): Promise<number | undefined> => {
      const t = header[name];
      if (!t) return undefined;
      const [a, b] = t.data_offsets;
      const buf = Buffer.alloc(b - a);
      await fh.read(buf, 0, b - a, 8 + hlen + a);
      if (t.dtype === 'F32' && buf.length >= 4) return buf.readFloatLE(0);
      if (t.dtype === 'F16' && buf.length >= 2) return fromFloat16Bits(buf.readUInt16LE(0));
      if (t.dtype === 'BF16' && buf.length >= 2) return new Float32Array(new Uint32Array([buf.readUInt16LE(0) << 16]).buffer)[0];
      if (t.dtype === 'F64' && buf.length >= 8) return buf.readDoubleLE(0);
      throw new ClipDecoderError('MODEL_INVALID', `${path}: ${name} has dtype ${t.dtype}, expected F32, F16, BF16 or F64`, path);
    };
    return { logitScale: await scalar('logit_scale'), logitBias: await scalar('logit_bias') };
  } finally {
    await fh.close();
  }
}

/** What a full-model ONNX run gives: logits [1, 2] of one image against two texts, and their embeddings. */
export interface FullModelProbe {
  logits: [number, number];
  cosines: [number, number];
}

/** Solves s and b from two (cosine, logit) pairs of the full model. */
export function solveLogitParams(probe: FullModelProbe, path: string): { scale: number; bias: number } {
  const [l1, l2] = probe.logits;
  const [c1, c2] = probe.cosines;
  if (!(Math.abs(c1 - c2) > 1e-6)) {
    throw new ClipDecoderError(
      'MODEL_INVALID',
      `${path}: the probe texts have the same cosine (${c1}): cannot solve the logit scale`,
      path,
    );
  }
  const scale = (l1 - l2) / (c1 - c2);
  return { scale, bias: l1 - scale * c1 };
}

/** Sources that need no ONNX run: options, model.safetensors. Undefined when neither has them. */
export async function logitParamsWithoutOnnx(
  dir: string,
  family: 'clip' | 'siglip',
  given: { scale?: number; bias?: number } | undefined,
): Promise<LogitParams | undefined> {
  if (given?.scale !== undefined && (family === 'clip' || given.bias !== undefined)) {
    return { scale: given.scale, bias: given.bias ?? 0, source: 'options' };
  }
  const st = join(dir, 'model.safetensors');
  if (existsSync(st)) {
    const { logitScale, logitBias } = await readLogitTensors(st);
    if (logitScale !== undefined && (family === 'clip' || logitBias !== undefined)) {
      return { scale: given?.scale ?? Math.exp(logitScale), bias: given?.bias ?? logitBias ?? 0, source: 'model.safetensors' };
    }
  }
  return undefined;
}

/** The message when no source has them. */
export function missingLogitParams(dir: string): ClipDecoderError {
  return new ClipDecoderError(
    'MODEL_NOT_FOUND',
    `${dir}: SigLIP's logit scale and bias are not in its two towers; the folder needs onnx/model.onnx or model.safetensors ` +
      `(both in the Hugging Face repos), or pass them (ClipModelOptions.logit = { scale, bias })`,
    dir,
  );
}

export function configLogitScale(config: Record<string, unknown>): number {
  const v = config.logit_scale_init_value;
  return Math.exp(typeof v === 'number' ? v : Math.log(1 / 0.07));
}
