// The on-disk feature cache: append-only shards of records plus an append-only index, so that a process killed
// at any moment (kill -9) leaves every indexed record whole, and a rerun continues where it stopped.
//
//   DIR/meta.json      fingerprint (model + preprocessing + dataset) and shapes; written once, atomically
//   DIR/shard-NNNN.bin records: [tokens T×C][imageEmbed E], fixed size, back to back, as float32 (format 2) or, with
//                      dtype "float16" (format 3, so that older versions refuse it rather than misread it),
//                      as IEEE half floats: half the bytes; reads convert back to float32
//   DIR/index.jsonl    one line per committed record: {"key","shard","slot","sha256","source"}; written after the
//                      shard is fsynced
//
// A record counts only once its index line is complete; bytes a crash left past the last indexed record are
// overwritten by the next append. Keys are "<image id>" for the plain view and "<image id>#<view>" for
// augmented views.
//
// Integrity: "sha256" is the digest of the key, a newline and the record's bytes, checked on every read, so a
// damaged shard or an index line pointing at another image's slot is refused (CACHE_CORRUPT, naming the shard
// file and the record) instead of being trained on; non-finite values are refused the same way. "source" is
// what the record was computed from (the extractor's "<size>:<mtime ns>" of the image file): a record whose
// source changed is recomputed and its new index line supersedes the old one (the last line of a key wins).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, closeSync, fsyncSync, readSync, ftruncateSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { fromFloat16Bits, toFloat16Bits } from '../clip/float16.ts';
import { ClipDecoderError } from '../errors.ts';
import { writeFileAtomic, writeAll } from '../util/fs.ts';

/** Format of float32 caches (unchanged since format 2); float16 caches are format 3. */
export const CACHE_FORMAT_VERSION = 2;
export const CACHE_FORMAT_FLOAT16 = 3;
export type CacheDtype = 'float32' | 'float16';
export const CACHE_DTYPES: readonly CacheDtype[] = ['float32', 'float16'];

/** The format number a cache of this dtype is written with. */
export function cacheFormat(dtype: CacheDtype | undefined): number {
  return dtype === 'float16' ? CACHE_FORMAT_FLOAT16 : CACHE_FORMAT_VERSION;
}
/** Records per shard file (keeps files a manageable size). */
const RECORDS_PER_SHARD = 4096;

export interface CacheMeta {
  format: number;
  /** Hash of the model files, preprocessing and options that determine the features. */
  modelFingerprint: string;
  /** Hash of the dataset manifest the features belong to. */
  datasetFingerprint: string;
  modelId: string;
  numTokens: number;
  tokenDim: number;
  embedDim: number;
  keepCls: boolean;
  /** How values are stored; absent (format 2) is float32. */
  dtype?: CacheDtype;
}

export interface CacheEntry {
  shard: number;
  slot: number;
  /** SHA-256 (hex) of the key, '\n' and the record's bytes. */
  sha256: string;
  /** What the record was computed from (e.g. "<size>:<mtime ns>" of the image file), when known. */
  source?: string;
}

/** A record to store: the features of one (image, view) and, optionally, the state of its source file. */
export interface CacheRecord {
  key: string;
  tokens: Float32Array;
  imageEmbed: Float32Array;
  source?: string;
}

function recordDigest(key: string, record: Uint8Array): string {
  return createHash('sha256').update(`${key}\n`).update(record).digest('hex');
}

const isEntry = (r: unknown): r is CacheEntry & { key: string } => {
  const e = r as Record<string, unknown>;
  return (
    typeof e?.key === 'string' &&
    Number.isInteger(e.shard) &&
    (e.shard as number) >= 0 &&
    Number.isInteger(e.slot) &&
    (e.slot as number) >= 0 &&
    (e.slot as number) < RECORDS_PER_SHARD &&
    typeof e.sha256 === 'string' &&
    (e.source === undefined || typeof e.source === 'string')
  );
};

/** A cache's meta.json; unreadable is CACHE_CORRUPT naming it. */
function readCacheMeta(metaPath: string): CacheMeta {
  try {
    return JSON.parse(readFileSync(metaPath, 'utf8')) as CacheMeta;
  } catch (e) {
    throw new ClipDecoderError(
      'CACHE_CORRUPT',
      `${metaPath}: unreadable (${(e as Error).message}); delete the cache folder to rebuild it`,
      metaPath,
    );
  }
}

/** What training and scoring read features from: one cache, or the shards of a sharded extract (src/scale/sharded-cache.ts). */
export interface FeatureSource {
  readonly dir: string;
  readonly meta: CacheMeta;
  readonly size: number;
  has(key: string): boolean;
  read(key: string, into?: { tokens: Float32Array; imageEmbed: Float32Array }): { tokens: Float32Array; imageEmbed: Float32Array };
  close(): void;
}

export class FeatureCache implements FeatureSource {
  readonly dir: string;
  readonly meta: CacheMeta;
  private readonly index = new Map<string, CacheEntry>();
  /** Next free slot overall (shard = floor(next / RECORDS_PER_SHARD)). */
  private next = 0;
  private indexFd: number | undefined;
  private readonly shardFds = new Map<number, number>();

  private constructor(dir: string, meta: CacheMeta) {
    this.dir = dir;
    this.meta = meta;
  }

  get recordFloats(): number {
    return this.meta.numTokens * this.meta.tokenDim + this.meta.embedDim;
  }

  get dtype(): CacheDtype {
    return this.meta.dtype ?? 'float32';
  }

  /** Bytes of one stored record. */
  get recordBytes(): number {
    return this.recordFloats * (this.dtype === 'float16' ? 2 : 4);
  }

  get size(): number {
    return this.index.size;
  }

  has(key: string): boolean {
    return this.index.has(key);
  }

  /** The source state recorded with the key's record (undefined when absent or not recorded). */
  sourceOf(key: string): string | undefined {
    return this.index.get(key)?.source;
  }

  keys(): IterableIterator<string> {
    return this.index.keys();
  }

  /**
   * Opens the cache in DIR, creating it with `meta` if absent. An existing cache made for another model or
   * dataset is refused by name.
   */
  static async open(dir: string, meta: CacheMeta): Promise<FeatureCache> {
    mkdirSync(dir, { recursive: true });
    const metaPath = join(dir, 'meta.json');
    if (existsSync(metaPath)) {
      const old = readCacheMeta(metaPath);
      const problems: string[] = [];
      const oldDtype = old.dtype ?? 'float32';
      if (old.format !== cacheFormat(oldDtype))
        problems.push(`format ${old.format} (this version reads ${CACHE_FORMAT_VERSION} (float32) and ${CACHE_FORMAT_FLOAT16} (float16))`);
      else if (oldDtype !== (meta.dtype ?? 'float32'))
        problems.push(`records stored as ${oldDtype} (this run: ${meta.dtype ?? 'float32'}; --cache-dtype)`);
      if (old.modelFingerprint !== meta.modelFingerprint)
        problems.push(
          `another model or preprocessing (${old.modelId}, fingerprint ${old.modelFingerprint.slice(0, 12)} ≠ ${meta.modelFingerprint.slice(0, 12)})`,
        );
      if (old.datasetFingerprint !== meta.datasetFingerprint)
        problems.push(
          `another dataset manifest (fingerprint ${old.datasetFingerprint.slice(0, 12)} ≠ ${meta.datasetFingerprint.slice(0, 12)})`,
        );
      if (problems.length) {
        throw new ClipDecoderError(
          'CACHE_MISMATCH',
          `${dir}: this feature cache was made for ${problems.join(' and ')}; use another --cache folder or delete this one`,
          dir,
        );
      }
      const cache = new FeatureCache(dir, old);
      cache.loadIndex();
      return cache;
    }
    await writeFileAtomic(metaPath, `${JSON.stringify(meta, null, 2)}\n`);
    const cache = new FeatureCache(dir, meta);
    cache.loadIndex();
    return cache;
  }

  /** Opens an existing cache for reading, checking it was made for the given fingerprints when given. */
  static async openExisting(dir: string, expect: { modelFingerprint?: string; datasetFingerprint?: string } = {}): Promise<FeatureCache> {
    const metaPath = join(dir, 'meta.json');
    if (!existsSync(metaPath))
      throw new ClipDecoderError('CACHE_MISMATCH', `${dir}: not a feature cache (no meta.json); run \`clip-decoder extract\` first`, dir);
    const meta = readCacheMeta(metaPath);
    return FeatureCache.open(dir, {
      ...meta,
      modelFingerprint: expect.modelFingerprint ?? meta.modelFingerprint,
      datasetFingerprint: expect.datasetFingerprint ?? meta.datasetFingerprint,
    });
  }

  private loadIndex(): void {
    const path = join(this.dir, 'index.jsonl');
    if (!existsSync(path)) return;
    const text = readFileSync(path, 'utf8');
    const lines = text.split('\n');
    // The last element is '' after a complete final line, or a torn line after a crash: drop it either way.
    lines.pop();
    let maxSlot = -1;
    for (const [n, line] of lines.entries()) {
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        rec = undefined;
      }
      // Appends end with a newline and fsync, so only the final (popped) line can be torn: anything else is damage.
      if (!isEntry(rec)) {
        throw new ClipDecoderError(
          'CACHE_CORRUPT',
          `${path}: line ${n + 1} is not a valid index entry; delete the cache folder to rebuild it`,
          path,
        );
      }
      this.index.set(rec.key, {
        shard: rec.shard,
        slot: rec.slot,
        sha256: rec.sha256,
        ...(rec.source !== undefined ? { source: rec.source } : {}),
      });
      maxSlot = Math.max(maxSlot, rec.shard * RECORDS_PER_SHARD + rec.slot);
    }
    this.next = maxSlot + 1;
    // Drop a torn final line so the next append starts on a fresh line.
    const complete = text.lastIndexOf('\n') + 1;
    if (complete < Buffer.byteLength(text)) {
      const fd = openSync(path, 'r+');
      ftruncateSync(fd, Buffer.byteLength(text.slice(0, complete)));
      closeSync(fd);
    }
  }

  private shardFd(shard: number, mode: 'r' | 'a'): number {
    let fd = this.shardFds.get(shard);
    if (fd === undefined) {
      const path = this.shardPath(shard);
      fd = openSync(path, existsSync(path) ? 'r+' : mode === 'a' ? 'w+' : 'r');
      this.shardFds.set(shard, fd);
    }
    return fd;
  }

  private shardPath(shard: number): string {
    return join(this.dir, `shard-${String(shard).padStart(4, '0')}.bin`);
  }

  /**
   * Appends records and commits them: data first (fsynced), then their index lines (fsynced). Keys already
   * present with the same source are skipped; a key whose source changed gets a new record that supersedes
   * the old one. Records with non-finite values are refused.
   */
  append(records: CacheRecord[]): void {
    const { numTokens: T, tokenDim: C, embedDim: E } = this.meta;
    const bytes = this.recordBytes;
    const half = this.dtype === 'float16';
    const lines: string[] = [];
    const touched = new Set<number>();
    for (const r of records) {
      const old = this.index.get(r.key);
      if (old && old.source === r.source) continue;
      if (r.tokens.length !== T * C || r.imageEmbed.length !== E) {
        throw new ClipDecoderError(
          'INPUT_INVALID',
          `feature record "${r.key}" has ${r.tokens.length}+${r.imageEmbed.length} values, expected ${T}×${C}+${E}`,
          r.key,
        );
      }
      const bad =
        firstNonFinite(r.tokens) ?? (firstNonFinite(r.imageEmbed) === undefined ? undefined : T * C + firstNonFinite(r.imageEmbed)!);
      if (bad !== undefined)
        throw new ClipDecoderError(
          'INPUT_INVALID',
          `feature record "${r.key}" holds a non-finite value at index ${bad}; it was not cached`,
          r.key,
        );
      const shard = Math.floor(this.next / RECORDS_PER_SHARD);
      const slot = this.next % RECORDS_PER_SHARD;
      const fd = this.shardFd(shard, 'a');
      const buf = Buffer.allocUnsafe(bytes);
      if (half) {
        const over = encodeHalf(r.tokens, buf, 0) ?? encodeHalf(r.imageEmbed, buf, T * C * 2);
        if (over !== undefined)
          throw new ClipDecoderError(
            'INPUT_INVALID',
            `feature record "${r.key}" holds ${over}, beyond float16's range (±65504); it was not cached: use --cache-dtype float32`,
            r.key,
          );
      } else {
        Buffer.from(r.tokens.buffer, r.tokens.byteOffset, r.tokens.byteLength).copy(buf, 0);
        Buffer.from(r.imageEmbed.buffer, r.imageEmbed.byteOffset, r.imageEmbed.byteLength).copy(buf, T * C * 4);
      }
      writeAll(fd, buf.subarray(0, bytes), slot * bytes);
      touched.add(fd);
      const entry: CacheEntry = { shard, slot, sha256: recordDigest(r.key, buf), ...(r.source !== undefined ? { source: r.source } : {}) };
      lines.push(JSON.stringify({ key: r.key, ...entry }));
      this.index.set(r.key, entry);
      this.next++;
    }
    if (lines.length === 0) return;
    for (const fd of touched) fsyncSync(fd);
    this.indexFd ??= openSync(join(this.dir, 'index.jsonl'), 'a');
    writeAll(this.indexFd, `${lines.join('\n')}\n`);
    fsyncSync(this.indexFd);
  }

  /**
   * Reads one record into the given arrays (or fresh ones), after checking its digest and that every value is
   * finite. Throws if the key is not cached (CACHE_MISMATCH) or the record is damaged (CACHE_CORRUPT).
   */
  read(key: string, into?: { tokens: Float32Array; imageEmbed: Float32Array }): { tokens: Float32Array; imageEmbed: Float32Array } {
    const e = this.index.get(key);
    if (!e)
      throw new ClipDecoderError(
        'CACHE_MISMATCH',
        `${this.dir}: no features for "${key}"; run \`clip-decoder extract\` to complete the cache`,
        key,
      );
    const { numTokens: T, tokenDim: C, embedDim: E } = this.meta;
    const bytes = this.recordBytes;
    const fd = this.shardFd(e.shard, 'r');
    const buf = Buffer.allocUnsafe(bytes);
    const n = readSync(fd, buf, 0, bytes, e.slot * bytes);
    if (n !== bytes) {
      throw new ClipDecoderError(
        'CACHE_CORRUPT',
        `${this.shardPath(e.shard)}: shorter than the index says (record "${key}", slot ${e.slot}); delete the cache folder to rebuild it`,
        key,
      );
    }
    if (recordDigest(key, buf) !== e.sha256) {
      throw new ClipDecoderError(
        'CACHE_CORRUPT',
        `${this.shardPath(e.shard)}: record "${key}" (slot ${e.slot}) does not match its SHA-256 in ${join(this.dir, 'index.jsonl')} (the shard or the index was changed); delete the cache folder, or rerun \`clip-decoder extract\` into a new one`,
        key,
      );
    }
    const f =
      this.dtype === 'float16' ? decodeHalf(buf, this.recordFloats) : new Float32Array(buf.buffer, buf.byteOffset, this.recordFloats);
    const bad = firstNonFinite(f);
    if (bad !== undefined) {
      throw new ClipDecoderError(
        'CACHE_CORRUPT',
        `${this.shardPath(e.shard)}: record "${key}" (slot ${e.slot}) holds a non-finite value at index ${bad}; delete the cache folder to rebuild it`,
        key,
      );
    }
    const tokens = into?.tokens ?? new Float32Array(T * C);
    const imageEmbed = into?.imageEmbed ?? new Float32Array(E);
    tokens.set(f.subarray(0, T * C));
    imageEmbed.set(f.subarray(T * C));
    return { tokens, imageEmbed };
  }

  /** Total bytes of shard data (for reports). */
  diskBytes(): number {
    let total = 0;
    for (let s = 0; s <= Math.floor(Math.max(0, this.next - 1) / RECORDS_PER_SHARD); s++) {
      const path = this.shardPath(s);
      if (existsSync(path)) {
        const fd = openSync(path, 'r');
        total += fstatSync(fd).size;
        closeSync(fd);
      }
    }
    return total;
  }

  close(): void {
    for (const fd of this.shardFds.values()) closeSync(fd);
    this.shardFds.clear();
    if (this.indexFd !== undefined) closeSync(this.indexFd);
    this.indexFd = undefined;
  }
}

/** Writes `a` as float16 bits into `buf` at byte `offset`; returns the first value that overflows, if any. */
function encodeHalf(a: Float32Array, buf: Buffer, offset: number): number | undefined {
  const h = halfView(buf, offset, a.length);
  for (let i = 0; i < a.length; i++) {
    const bits = toFloat16Bits(a[i]!);
    if ((bits & 0x7c00) === 0x7c00) return a[i];
    h[i] = bits;
  }
  if (h.buffer !== buf.buffer) Buffer.from(h.buffer, h.byteOffset, h.byteLength).copy(buf, offset);
  return undefined;
}

/** Every float16 bit pattern's float32 value (256 KB, made on first use): decoding is one lookup per value. */
let HALF_TABLE: Float32Array | undefined;

function decodeHalf(buf: Buffer, n: number): Float32Array {
  const table = (HALF_TABLE ??= Float32Array.from({ length: 65536 }, (_, h) => fromFloat16Bits(h)));
  const h = halfView(buf, 0, n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = table[h[i]!]!;
  return out;
}

/** The n half floats at `offset` of `buf` as a Uint16Array (little-endian, as the file), copied when unaligned. */
function halfView(buf: Buffer, offset: number, n: number): Uint16Array {
  const at = buf.byteOffset + offset;
  if (at % 2 === 0) return new Uint16Array(buf.buffer, at, n);
  const copy = new Uint16Array(n);
  Buffer.from(copy.buffer).set(buf.subarray(offset, offset + 2 * n));
  return copy;
}

function firstNonFinite(a: Float32Array): number | undefined {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return i;
  return undefined;
}
