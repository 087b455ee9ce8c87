// The shards of a sharded extract (CACHE/shard-i-of-n/) read as one feature cache, without merging them first:
// `train --cache CACHE` and `cache merge CACHE` both open them here. The shards are checked as a merge checks them
// (src/scale/shard.ts: all there, complete, one run, each image once), and each cache is checked to hold every
// record its manifest lists; each record's SHA-256 is still checked when it is read.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { FeatureCache, type CacheMeta, type FeatureSource } from '../features/cache.ts';
import { collectShards, type ShardSet } from './shard.ts';

/** Whether DIR holds shard folders and no cache of its own (not merged yet). */
export function holdsUnmergedShards(dir: string): boolean {
  return existsSync(dir) && !existsSync(join(dir, 'meta.json')) && readdirSync(dir).some((n) => /^shard-\d+-of-\d+$/.test(n));
}

/** Opens every shard's cache of a checked shard set, checking they agree (meta) and hold what they list. */
export async function openShardCaches(dir: string, set: ShardSet, expect: { datasetFingerprint?: string } = {}): Promise<FeatureCache[]> {
  const caches: FeatureCache[] = [];
  try {
    for (const s of set.shards) caches.push(await FeatureCache.openExisting(s.dir, expect));
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
    return caches;
  } catch (e) {
    for (const c of caches) c.close();
    throw e;
  }
}

export class ShardedFeatures implements FeatureSource {
  readonly dir: string;
  readonly set: ShardSet;
  readonly caches: FeatureCache[];
  private readonly owner = new Map<string, FeatureCache>();

  private constructor(dir: string, set: ShardSet, caches: FeatureCache[]) {
    this.dir = dir;
    this.set = set;
    this.caches = caches;
    set.shards.forEach((s, i) => {
      for (const k of s.manifest.keys) this.owner.set(k, caches[i]!);
    });
  }

  /** The checked shards in DIR (SHARD_INCOMPLETE / SHARD_MISMATCH naming what is wrong). */
  static async open(dir: string, expect: { datasetFingerprint?: string } = {}): Promise<ShardedFeatures> {
    const set = collectShards(dir, 'cache', '`clip-decoder extract --shard i/n`');
    return new ShardedFeatures(dir, set, await openShardCaches(dir, set, expect));
  }

  get meta(): CacheMeta {
    return this.caches[0]!.meta;
  }

  get size(): number {
    return this.owner.size;
  }

  has(key: string): boolean {
    return this.owner.has(key);
  }

  sourceOf(key: string): string | undefined {
    return this.owner.get(key)?.sourceOf(key);
  }

  read(key: string, into?: { tokens: Float32Array; imageEmbed: Float32Array }): { tokens: Float32Array; imageEmbed: Float32Array } {
    const c = this.owner.get(key);
    if (!c) throw new ClipDecoderError('CACHE_MISMATCH', `${this.dir}: no shard holds features for "${key}"`, key);
    return c.read(key, into);
  }

  close(): void {
    for (const c of this.caches) c.close();
  }
}

/** The features in DIR: its cache, or, when it holds only the shards of a sharded extract, those shards. */
export async function openFeatures(dir: string, expect: { datasetFingerprint?: string } = {}): Promise<FeatureSource> {
  return holdsUnmergedShards(dir) ? ShardedFeatures.open(dir, expect) : FeatureCache.openExisting(dir, expect);
}
