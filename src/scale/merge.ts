// Merging the shards of a sharded run into the one output an unsharded run would have written: the feature cache
// (`cache merge`), the embeddings folder (`embeddings merge`) and the results file (`results merge`). Each first
// checks the shards (src/scale/shard.ts: all there, complete, of one run, no item twice or in none), then
// copies every record, verifying it on the way (the cache's per-record SHA-256, the results lines' digests),
// into a temporary output that becomes the output only when whole: a killed merge is rerun as it was.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Dataset } from '../data/types.ts';
import { ClipDecoderError } from '../errors.ts';
import { FeatureCache, type CacheRecord } from '../features/cache.ts';
import { datasetExtractItems, datasetFingerprint, extractKeys } from '../features/extract.ts';
import { embeddingsFile, metaFile, readMeta, Shard } from '../library/embed-library.ts';
import { HEADER_BYTES, parseNpyHeader } from '../library/npy.ts';
import { ResultsFile, type ResultIdentity } from '../library/results.ts';
import { writeFileAtomic } from '../util/fs.ts';
import { collectShards, keyDifferences } from './shard.ts';
import { openShardCaches } from './sharded-cache.ts';

export interface MergeSummary {
  shards: number;
  records: number;
  out: string;
}

/** Files of a feature cache (meta.json is its commit point: a folder is a cache once it has one). */
const CACHE_FILE = /^(shard-\d{4,}\.bin|index\.jsonl)$/;

/**
 * Moves the finished output in `tmp` to `out`: a rename of the folder when `out` does not exist, else its files
 * one by one with `commitFile` last (the folder holds shards besides, when it is the shards' own parent).
 */
function commitOutput(tmp: string, out: string, commitFile: string): void {
  if (!existsSync(out)) {
    renameSync(tmp, out);
    return;
  }
  for (const f of readdirSync(tmp)) if (f !== commitFile) renameSync(join(tmp, f), join(out, f));
  renameSync(join(tmp, commitFile), join(out, commitFile));
  rmSync(tmp, { recursive: true, force: true });
}

/** A fresh temporary folder for the output `out`: inside it when it exists, else beside it. */
function tempFor(out: string): string {
  const tmp = existsSync(out) ? join(out, '.merging') : join(dirname(resolve(out)), `.${basename(out)}.merging`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  return tmp;
}

export interface MergeCacheOptions {
  /** Where the merged cache goes (default: DIR itself, beside its shard folders, so `--cache DIR` reads it). */
  out?: string;
  /** The dataset the shards were extracted from: checked to be it, and its items to be exactly the shards' union. */
  dataset?: Dataset;
  onProgress?: (done: number, total: number) => void;
}

/** Joins the shards of `extract --shard` in DIR into one feature cache, record for record. */
export async function mergeCacheShards(dir: string, options: MergeCacheOptions = {}): Promise<MergeSummary> {
  const set = collectShards(dir, 'cache', '`clip-decoder extract --shard i/n`');
  const out = options.out ?? dir;
  if (existsSync(join(out, 'meta.json')))
    throw new ClipDecoderError(
      'OUTPUT_UNWRITABLE',
      `${out}: already holds a feature cache (meta.json)${out === dir ? ': these shards were merged already' : ''}; give another --out, or delete it to merge again`,
      out,
    );
  const run = set.shards[0]!.manifest.run;
  if (options.dataset) {
    const fp = datasetFingerprint(options.dataset.items);
    if (fp !== run.datasetFingerprint)
      throw new ClipDecoderError(
        'SHARD_MISMATCH',
        `${dir}: the shards were extracted from another dataset than ${options.dataset.name} (fingerprint ${String(run.datasetFingerprint).slice(0, 12)} ≠ ${fp.slice(0, 12)})`,
        dir,
      );
    const expected = extractKeys(datasetExtractItems(options.dataset, Number(run.views)));
    const diffs = keyDifferences(expected, new Set(set.shards.flatMap((s) => s.manifest.keys)));
    if (diffs.length > 0)
      throw new ClipDecoderError('SHARD_MISMATCH', `${dir}: the shards' items are not ${options.dataset.name}'s: ${diffs.join('; ')}`, dir);
  }
  // Leftovers of a merge killed while moving its files in (no meta.json yet): not a cache, so they go.
  if (existsSync(out)) for (const f of readdirSync(out)) if (CACHE_FILE.test(f)) rmSync(join(out, f));
  const caches = await openShardCaches(dir, set);
  const tmp = tempFor(out);
  let merged: FeatureCache | undefined;
  let records = 0;
  const total = set.shards.reduce((n, s) => n + s.manifest.keys.length, 0);
  try {
    const meta = caches[0]!.meta;
    merged = await FeatureCache.open(tmp, meta);
    const batch: CacheRecord[] = [];
    const flush = () => {
      merged!.append(batch.splice(0));
      options.onProgress?.(records, total);
    };
    for (const { key, shard } of set.order) {
      const c = caches[shard]!;
      // read() checks the record's SHA-256 and finiteness: a damaged shard is named, never merged.
      const { tokens, imageEmbed } = c.read(key);
      batch.push({ key, tokens, imageEmbed, source: c.sourceOf(key) });
      records++;
      if (batch.length >= 64) flush();
    }
    flush();
    merged.close();
    merged = undefined;
    commitOutput(tmp, out, 'meta.json');
  } finally {
    merged?.close();
    for (const c of caches) c.close();
  }
  return { shards: set.count, records, out };
}

export interface MergeEmbeddingsOptions {
  /** Where the merged folder goes (default: EMB itself, beside its shard folders). */
  out?: string;
  onProgress?: (done: number, total: number) => void;
}

/** Reads rows of a float32 .npy this library wrote, one at a time. */
class NpyRows {
  readonly rows: number;
  private readonly fd: number;
  private readonly rowBytes: number;
  constructor(
    readonly path: string,
    rowShape: readonly number[],
  ) {
    this.fd = openSync(path, 'r');
    const h = Buffer.alloc(HEADER_BYTES);
    readSync(this.fd, h, 0, HEADER_BYTES, 0);
    const shape = parseNpyHeader(h);
    if (!shape || shape.slice(1).join() !== rowShape.join()) {
      closeSync(this.fd);
      throw new ClipDecoderError('SHARD_MISMATCH', `${path}: not a float32 .npy of rows [${rowShape.join(', ')}]`, path);
    }
    this.rows = shape[0]!;
    this.rowBytes = rowShape.reduce((a, b) => a * b, 1) * 4;
  }
  read(r: number): Float32Array {
    const buf = Buffer.alloc(this.rowBytes);
    if (readSync(this.fd, buf, 0, this.rowBytes, HEADER_BYTES + r * this.rowBytes) !== this.rowBytes)
      throw new ClipDecoderError('SHARD_INCOMPLETE', `${this.path}: shorter than its header says (row ${r})`, this.path);
    return new Float32Array(buf.buffer, buf.byteOffset, this.rowBytes / 4);
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** Joins the shards of `embed --shard` in EMB into one embeddings folder, one row per image (its last). */
export async function mergeEmbeddingShards(dir: string, options: MergeEmbeddingsOptions = {}): Promise<MergeSummary> {
  const set = collectShards(dir, 'embeddings', '`clip-decoder embed --out EMB --shard i/n`');
  const out = options.out ?? dir;
  if (existsSync(join(out, 'embeddings.json')))
    throw new ClipDecoderError(
      'OUTPUT_UNWRITABLE',
      `${out}: already holds embeddings (embeddings.json)${out === dir ? ': these shards were merged already' : ''}; give another --out, or delete it to merge again`,
      out,
    );
  const meta = readMeta(join(set.shards[0]!.dir, 'embeddings.json'))!;
  // Leftovers of a merge killed while moving its folders in (no embeddings.json yet): not an output, so they go.
  if (existsSync(out)) for (const d of ['img_emb', 'patch_tokens', 'metadata']) rmSync(join(out, d), { recursive: true, force: true });
  const total = set.shards.reduce((n, s) => n + s.manifest.keys.length, 0);
  const tmp = tempFor(out);
  for (const d of ['img_emb', 'patch_tokens', 'metadata']) mkdirSync(join(tmp, d), { recursive: true });
  let writer = new Shard(tmp, 0, meta, new Map());
  let records = 0;
  try {
    // Every row of each shard's files, the last of each path winning (a changed image got a new row).
    const last = set.shards.map((s) => {
      const rows = new Map<string, { k: number; r: number; size: number; mtimeNs: string }>();
      for (let k = 0; existsSync(metaFile(s.dir, k)); k++) {
        const lines = readFileSync(metaFile(s.dir, k), 'utf8').split('\n').slice(0, -1);
        const emb = new NpyRows(embeddingsFile(s.dir, 'img_emb', k, 'npy'), [meta.embedDim]);
        const n = Math.min(emb.rows, lines.length);
        emb.close();
        for (let r = 0; r < n; r++) {
          const row = JSON.parse(lines[r]!) as { image_path: string; size: number; mtime_ns: string };
          rows.set(row.image_path, { k, r, size: row.size, mtimeNs: row.mtime_ns });
        }
      }
      const missing = s.manifest.keys.filter((key) => !rows.has(key));
      if (missing.length > 0)
        throw new ClipDecoderError(
          'SHARD_INCOMPLETE',
          `${s.dir}: says complete but lacks ${missing.length} image(s) (${missing.slice(0, 5).join(', ')}); rerun its command: ${s.manifest.command ?? 'clip-decoder embed --shard'}`,
          s.dir,
        );
      return rows;
    });
    const files = new Map<string, { emb: NpyRows; tok?: NpyRows }>();
    const source = (shard: number, k: number) => {
      const id = `${shard}:${k}`;
      let o = files.get(id);
      if (!o) {
        const d = set.shards[shard]!.dir;
        o = {
          emb: new NpyRows(embeddingsFile(d, 'img_emb', k, 'npy'), [meta.embedDim]),
          tok: meta.tokens ? new NpyRows(embeddingsFile(d, 'patch_tokens', k, 'npy'), meta.tokens) : undefined,
        };
        files.set(id, o);
      }
      return o;
    };
    try {
      for (const { key, shard } of set.order) {
        const at = last[shard]!.get(key)!;
        const src = source(shard, at.k);
        if (writer.rows >= meta.shardSize) {
          writer.close();
          writer = new Shard(tmp, writer.k + 1, meta, new Map());
        }
        writer.append([
          {
            path: key,
            stamp: { size: at.size, mtimeNs: at.mtimeNs },
            embed: src.emb.read(at.r),
            tokens: src.tok ? src.tok.read(at.r) : new Float32Array(0),
          },
        ]);
        records++;
        if (records % 256 === 0) options.onProgress?.(records, total);
      }
    } finally {
      for (const o of files.values()) {
        o.emb.close();
        o.tok?.close();
      }
    }
  } finally {
    writer.close();
  }
  await writeFileAtomic(join(tmp, 'embeddings.json'), `${JSON.stringify(meta, null, 2)}\n`);
  // Folders of the output are moved as whole folders: the merged layout replaces nothing of the shards.
  commitOutput(tmp, out, 'embeddings.json');
  return { shards: set.count, records, out };
}

/** Joins the shards of `tag --out OUT --shard i/n` (OUT.shards/) into the results file OUT, one record per image. */
export async function mergeResultShards(out: string): Promise<MergeSummary> {
  const parent = `${out}.shards`;
  const set = collectShards(parent, 'results', '`clip-decoder tag --out OUT --shard i/n`');
  if (existsSync(out))
    throw new ClipDecoderError('OUTPUT_UNWRITABLE', `${out}: exists already; delete it (or move it) to merge ${parent} into it`, out);
  const identity = set.shards[0]!.manifest.run as unknown as ResultIdentity;
  const recs = set.shards.map((s) => {
    const file = join(s.dir, 'results.jsonl');
    const lines = existsSync(file) ? ResultsFile.readLines(file, identity) : new Map<string, string>();
    const missing = s.manifest.keys.filter((k) => !lines.has(k));
    if (missing.length > 0)
      throw new ClipDecoderError(
        'SHARD_INCOMPLETE',
        `${s.dir}: says complete but lacks ${missing.length} record(s) (${missing.slice(0, 5).join(', ')}); rerun its command: ${s.manifest.command ?? 'clip-decoder tag --shard'}`,
        s.dir,
      );
    return lines;
  });
  const lines = set.order.map(({ key, shard }) => recs[shard]!.get(key)!);
  await writeFileAtomic(out, lines.join(''));
  return { shards: set.count, records: lines.length, out };
}
