// Merging the shards of a sharded run into the one output an unsharded run would have written: the feature cache
// (`cache merge`), the embeddings folder (`embeddings merge`) and the results file (`results merge`). Each first
// checks the shards (src/scale/shard.ts: all there, complete, of one run, no item twice or in none), then
// copies every record, verifying it on the way (the cache's per-record SHA-256, the results lines' digests),
// into a temporary output that becomes the output only when whole: a killed merge is rerun as it was.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Dataset } from '../data/types.ts';
import { ClipDecoderError } from '../errors.ts';
import { FeatureCache, type CacheRecord } from '../features/cache.ts';
import { datasetExtractItems, datasetFingerprint, extractKeys } from '../features/extract.ts';
import { collectShards, keyDifferences } from './shard.ts';

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
  const caches = await Promise.all(set.shards.map((s) => FeatureCache.openExisting(s.dir)));
  const tmp = tempFor(out);
  let merged: FeatureCache | undefined;
  let records = 0;
  const total = set.shards.reduce((n, s) => n + s.manifest.keys.length, 0);
  try {
    const meta = caches[0]!.meta;
    caches.forEach((c, i) => {
      const name = set.shards[i]!.name;
      if (JSON.stringify(c.meta) !== JSON.stringify(meta))
        throw new ClipDecoderError(
          'SHARD_MISMATCH',
          `${dir}: ${set.shards[0]!.name} and ${name} hold caches made otherwise (meta.json differs: ${JSON.stringify(meta)} vs ${JSON.stringify(c.meta)})`,
          c.dir,
        );
      const missing = set.shards[i]!.manifest.keys.filter((k) => !c.has(k));
      if (missing.length > 0)
        throw new ClipDecoderError(
          'SHARD_INCOMPLETE',
          `${c.dir}: says complete but lacks ${missing.length} record(s) (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}); rerun its command: ${set.shards[i]!.manifest.command ?? 'clip-decoder extract --shard'}`,
          c.dir,
        );
    });
    merged = await FeatureCache.open(tmp, meta);
    const batch: CacheRecord[] = [];
    const flush = () => {
      merged!.append(batch.splice(0));
      options.onProgress?.(records, total);
    };
    for (const [i, c] of caches.entries()) {
      for (const key of set.shards[i]!.manifest.keys) {
        // read() checks the record's SHA-256 and finiteness: a damaged shard is named, never merged.
        const { tokens, imageEmbed } = c.read(key);
        batch.push({ key, tokens, imageEmbed, source: c.sourceOf(key) });
        records++;
        if (batch.length >= 64) flush();
      }
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
