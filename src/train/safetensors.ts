// The safetensors format, read and written by hand: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then the raw
// little-endian data. Offsets are relative to the start of the data section.
import { ClipDecoderError } from '../errors.ts';

export type StDtype = 'F32' | 'F64' | 'U8';
export type StData = Float32Array | Float64Array | Uint8Array;

export interface StTensor {
  dtype: StDtype;
  shape: number[];
  data: StData;
}

const BYTES: Record<StDtype, number> = { F32: 4, F64: 8, U8: 1 };
const MAX_HEADER = 100 * 1024 * 1024;

function dtypeOf(data: StData): StDtype {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  return 'U8';
}

/** Serialises tensors (in the given order) and string metadata. */
export function encodeSafetensors(
  tensors: Iterable<[string, { shape: readonly number[]; data: StData }]>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  const parts: Uint8Array[] = [];
  let off = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new Error('tensor name __metadata__ is reserved');
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`tensor ${name}: shape [${t.shape}] does not match ${t.data.length} values`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: dtypeOf(t.data), shape: [...t.shape], data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  if (metadata) header.__metadata__ = metadata;
  let json = JSON.stringify(header);
  while (Buffer.byteLength(json) % 8 !== 0) json += ' ';
  const hbytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hbytes.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  for (const b of parts) {
    out.set(b, p);
    p += b.length;
  }
  return out;
}

/** Parses a safetensors file; every problem is a CHECKPOINT_INVALID error naming `source`. */
export function decodeSafetensors(bytes: Uint8Array, source: string): { tensors: Map<string, StTensor>; metadata: Record<string, string> } {
  const bad = (why: string): never => {
    throw new ClipDecoderError('CHECKPOINT_INVALID', `${source} is not a valid safetensors file: ${why}`, source);
  };
  if (bytes.length < 8) bad(`only ${bytes.length} bytes`);
  const hlen = Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true));
  if (hlen > MAX_HEADER || 8 + hlen > bytes.length) bad(`header length ${hlen} exceeds the file (${bytes.length} bytes)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + hlen)));
  } catch (e) {
    return bad(`header is not JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('header is not an object');
  const dataStart = 8 + hlen;
  const dataLen = bytes.length - dataStart;
  const tensors = new Map<string, StTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null) bad('__metadata__ is not an object');
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e.dtype !== 'string' || !(e.dtype in BYTES)) bad(`tensor ${name} has unsupported dtype ${String(e.dtype)}`);
    const dtype = e.dtype as StDtype;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) bad(`tensor ${name} has an invalid shape`);
    const shape = e.shape as number[];
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isInteger(d) && d >= 0))
      bad(`tensor ${name} has invalid data_offsets`);
    const [b0, b1] = offs as number[];
    const n = shape.reduce((a, b) => a * b, 1);
    if (b1 < b0 || b1 > dataLen) bad(`tensor ${name} data [${b0}, ${b1}) lies outside the ${dataLen}-byte data section (truncated file?)`);
    if (b1 - b0 !== n * BYTES[dtype])
      bad(`tensor ${name} holds ${b1 - b0} bytes but shape [${shape}] of ${dtype} needs ${n * BYTES[dtype]}`);
    const raw = new Uint8Array(bytes.subarray(dataStart + b0, dataStart + b1)); // a copy: aligned, and not a view of the file (Buffer.slice would be)
    const data = dtype === 'F32' ? new Float32Array(raw.buffer) : dtype === 'F64' ? new Float64Array(raw.buffer) : raw;
    tensors.set(name, { dtype, shape, data });
  }
  return { tensors, metadata };
}
