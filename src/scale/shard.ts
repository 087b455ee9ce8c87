// Sharding: which part of a run this process does, and the manifest each shard leaves behind, for `extract`,
// `embed` and `tag` alike. We shard; the scheduler (a Slurm array job, a Kubernetes Indexed Job, a shell loop)
// schedules.
//
//   which shard:  --shard i/n; else a Slurm array task's SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN of
//                 SLURM_ARRAY_TASK_COUNT; else a Kubernetes Indexed Job's JOB_COMPLETION_INDEX of --shard-count n
//   which items:  the run's keys (dataset ids, absolute image paths) sorted by code unit, the k-th to shard k mod n:
//                 deterministic on every machine, and balanced (shard sizes differ by at most one)
//   its output:   OUT/shard-000i-of-000n/ plus shard.json in it: the run's identity (model, preprocessing,
//                 dataset, options), this shard's keys, the whole run's key count and digest, and `complete`,
//                 written atomically with false when the shard starts and with true when every key is done
//
// A merge (src/scale/merge.ts) refuses shards of different runs (naming both and what differs), a missing or
// incomplete shard (naming it and the command that finishes it: the same one again), and a key missing or doubled.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { parseDecimal } from '../numbers.ts';
import { writeFileAtomic } from '../util/fs.ts';

export interface ShardSpec {
  /** 0 ≤ index < count. */
  index: number;
  count: number;
}

export interface ShardFlags {
  /** --shard "i/n", or "none" (ignore the scheduler's environment). */
  shard?: string;
  /** --shard-count n: the count for a Kubernetes Indexed Job, whose environment gives only the index. */
  shardCount?: string;
}

function envInteger(env: NodeJS.ProcessEnv, name: string, kind: 'non-negative-integer' | 'positive-integer'): number {
  return parseDecimal(env[name]!, name, kind);
}

function checked(spec: ShardSpec, source: string): ShardSpec {
  if (spec.index >= spec.count)
    throw new ClipDecoderError(
      'BAD_PARAMETER',
      `${source}: shard index ${spec.index} is not below the shard count ${spec.count} (shards are 0 … ${spec.count - 1})`,
      source.split(' ')[0],
    );
  return spec;
}

/**
 * The shard this process runs, or undefined for an unsharded run. --shard wins over the environment;
 * "--shard none" ignores it (a command run by hand inside an array job's allocation).
 */
export function resolveShard(flags: ShardFlags, env: NodeJS.ProcessEnv = process.env): ShardSpec | undefined {
  if (flags.shard !== undefined) {
    if (flags.shardCount !== undefined)
      throw new ClipDecoderError(
        'BAD_PARAMETER',
        '--shard-count goes with JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); with --shard i/n, drop it',
        '--shard-count',
      );
    if (flags.shard.trim() === 'none') return undefined;
    const m = /^\s*([^/]*)\/([^/]*)\s*$/.exec(flags.shard);
    if (!m) throw new ClipDecoderError('BAD_PARAMETER', `--shard must be i/n (e.g. 0/8) or none, got "${flags.shard}"`, '--shard');
    const index = parseDecimal(m[1]!, '--shard index', 'non-negative-integer');
    const count = parseDecimal(m[2]!, '--shard count', 'positive-integer');
    return checked({ index, count }, `--shard ${flags.shard}`);
  }
  if (env.SLURM_ARRAY_TASK_ID !== undefined) {
    if (env.SLURM_ARRAY_TASK_COUNT === undefined)
      throw new ClipDecoderError(
        'BAD_PARAMETER',
        'SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; give --shard i/n',
        'SLURM_ARRAY_TASK_COUNT',
      );
    const id = envInteger(env, 'SLURM_ARRAY_TASK_ID', 'non-negative-integer');
    const count = envInteger(env, 'SLURM_ARRAY_TASK_COUNT', 'positive-integer');
    const min = env.SLURM_ARRAY_TASK_MIN === undefined ? 0 : envInteger(env, 'SLURM_ARRAY_TASK_MIN', 'non-negative-integer');
    const step = env.SLURM_ARRAY_TASK_STEP === undefined ? 1 : envInteger(env, 'SLURM_ARRAY_TASK_STEP', 'positive-integer');
    const index = (id - min) / step;
    if (!Number.isInteger(index) || index < 0)
      throw new ClipDecoderError(
        'BAD_PARAMETER',
        `SLURM_ARRAY_TASK_ID ${id} is not on the array's range (min ${min}, step ${step}); submit with --array=0-${count - 1}`,
        'SLURM_ARRAY_TASK_ID',
      );
    return checked({ index, count }, `SLURM_ARRAY_TASK_ID ${id} of SLURM_ARRAY_TASK_COUNT ${count}`);
  }
  if (env.JOB_COMPLETION_INDEX !== undefined) {
    if (flags.shardCount === undefined)
      throw new ClipDecoderError(
        'BAD_PARAMETER',
        "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the shard count: give --shard-count (the Job's completions)",
        '--shard-count',
      );
    const index = envInteger(env, 'JOB_COMPLETION_INDEX', 'non-negative-integer');
    const count = parseDecimal(flags.shardCount, '--shard-count', 'positive-integer');
    return checked({ index, count }, `JOB_COMPLETION_INDEX ${index} of --shard-count ${count}`);
  }
  if (flags.shardCount !== undefined)
    throw new ClipDecoderError(
      'BAD_PARAMETER',
      '--shard-count needs JOB_COMPLETION_INDEX in the environment (a Kubernetes Indexed Job); elsewhere give --shard i/n',
      '--shard-count',
    );
  return undefined;
}

/**
 * The items of one shard, in their given order: the distinct keys sorted by code unit, the k-th to shard k mod n.
 * Items with the same key go to the same shard.
 */
export function assignShard<T>(items: readonly T[], keyOf: (item: T) => string, spec: ShardSpec): T[] {
  const keys = [...new Set(items.map(keyOf))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const mine = new Set(keys.filter((_, k) => k % spec.count === spec.index));
  return items.filter((it) => mine.has(keyOf(it)));
}

/** "shard-0003-of-0008": the shard's folder name (wider numbers past 9999 shards). */
export function shardName(spec: ShardSpec): string {
  const w = Math.max(4, String(spec.count).length);
  return `shard-${String(spec.index).padStart(w, '0')}-of-${String(spec.count).padStart(w, '0')}`;
}

const SHARD_DIR = /^shard-(\d+)-of-(\d+)$/;

/** Digest of a set of keys (order does not matter). */
export function keySetDigest(keys: Iterable<string>): string {
  const h = createHash('sha256');
  for (const k of [...new Set(keys)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) h.update(`${k}\n`);
  return h.digest('hex');
}

export type ShardKind = 'cache' | 'embeddings' | 'results';

export interface ShardManifest {
  format: 'clip-decoder-shard';
  version: 1;
  kind: ShardKind;
  index: number;
  count: number;
  /** What every shard of one run shares (model and preprocessing fingerprints, dataset, options). */
  run: Record<string, string | number | boolean | null>;
  /** Keys of the whole run (every shard): how many, and their digest (keySetDigest). */
  total: number;
  totalDigest: string;
  /** This shard's keys, and the place of each in the whole run's order (so a merge keeps an unsharded run's order). */
  keys: string[];
  positions: number[];
  /** True once every key of this shard is done; false while it runs (or after it was killed or failed). */
  complete: boolean;
  /** The command that ran it, to name when it has to run again. */
  command?: string;
}

export const MANIFEST = 'shard.json';

/**
 * The command line of this process, for the manifest: the command that finishes the shard when it has to run
 * again. A shard the environment chose (a Slurm array task, a Kubernetes index) gets an explicit --shard i/n, since
 * a rerun outside the array would get another one (`sbatch --array=5` is task 0 of 1).
 */
export function thisCommand(spec: ShardSpec, argv: readonly string[] = process.argv): string {
  const args: string[] = [];
  let explicit = false;
  const rest = argv.slice(1);
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--shard-count') i++;
    else if (a.startsWith('--shard-count=')) continue;
    else {
      if (a === '--shard' || a.startsWith('--shard=')) explicit = true;
      args.push(a);
    }
  }
  if (!explicit) args.push('--shard', `${spec.index}/${spec.count}`);
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['node', ...args.map(quote)].join(' ');
}

/** Writes the shard's manifest atomically (first with complete false, at the end with true). */
export async function writeShardManifest(dir: string, manifest: ShardManifest): Promise<void> {
  await writeFileAtomic(join(dir, MANIFEST), `${JSON.stringify(manifest)}\n`);
}

/**
 * Starts a shard's run in `dir`: writes its manifest with complete false and returns the function that marks it
 * complete at the end (leave it unmarked when something failed: the merge names the shard, the same command
 * finishes it).
 */
export async function beginShard(
  dir: string,
  kind: ShardKind,
  spec: ShardSpec,
  run: ShardManifest['run'],
  allKeys: readonly string[],
  keys: readonly string[],
): Promise<() => Promise<void>> {
  const at = new Map<string, number>();
  allKeys.forEach((k, i) => at.has(k) || at.set(k, i));
  const mine = [...new Set(keys)];
  const manifest: ShardManifest = {
    format: 'clip-decoder-shard',
    version: 1,
    kind,
    index: spec.index,
    count: spec.count,
    run,
    total: new Set(allKeys).size,
    totalDigest: keySetDigest(allKeys),
    keys: mine,
    positions: mine.map((k) => at.get(k) ?? -1),
    complete: false,
    command: thisCommand(spec),
  };
  await writeShardManifest(dir, manifest);
  return () => writeShardManifest(dir, { ...manifest, complete: true });
}

/** A library run's shard: its files (by absolute path), and every file's key (the absolute path). */
export function shardFiles(files: readonly string[], spec: ShardSpec): { files: string[]; allKeys: string[] } {
  return { files: assignShard(files, (f) => resolve(f), spec), allKeys: files.map((f) => resolve(f)) };
}

export interface ShardSet {
  count: number;
  /** In index order. */
  shards: { dir: string; name: string; manifest: ShardManifest }[];
  /** Every key of the run with its shard (an index into `shards`), in the order of an unsharded run. */
  order: { key: string; shard: number }[];
}

/**
 * The shards of one run in `parent`, checked: all n there, each complete, all of the same run (identity, key
 * set), none sharing a key, together covering the run's keys. Throws SHARD_INCOMPLETE or SHARD_MISMATCH naming
 * the shards (and keys) at fault.
 */
export function collectShards(parent: string, kind: ShardKind, hint: string): ShardSet {
  const names = existsSync(parent) ? readdirSync(parent).filter((n) => SHARD_DIR.test(n)) : [];
  if (names.length === 0)
    throw new ClipDecoderError('SHARD_INCOMPLETE', `${parent}: no shard folders (shard-i-of-n) in it; run ${hint} first`, parent);
  const counts = [...new Set(names.map((n) => Number(SHARD_DIR.exec(n)![2])))];
  if (counts.length > 1)
    throw new ClipDecoderError(
      'SHARD_MISMATCH',
      `${parent}: holds shards of runs with different shard counts (${counts.join(', ')}): ${names.sort().join(', ')}; keep one run's shards in a folder`,
      parent,
    );
  const count = counts[0]!;
  const shards: ShardSet['shards'] = [];
  const problems: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = shardName({ index: i, count });
    const dir = join(parent, name);
    const mpath = join(dir, MANIFEST);
    if (!existsSync(mpath)) {
      problems.push(`${name} ${existsSync(dir) ? 'has no shard.json (it never started properly)' : 'is missing (it never ran)'}`);
      continue;
    }
    let manifest: ShardManifest;
    try {
      manifest = JSON.parse(readFileSync(mpath, 'utf8')) as ShardManifest;
    } catch (e) {
      problems.push(`${name}: ${MANIFEST} is unreadable (${(e as Error).message})`);
      continue;
    }
    if (manifest.format !== 'clip-decoder-shard' || manifest.kind !== kind || manifest.index !== i || manifest.count !== count) {
      throw new ClipDecoderError(
        'SHARD_MISMATCH',
        `${mpath}: not a shard ${i}/${count} of ${kind} (it says ${manifest.kind} ${manifest.index}/${manifest.count})`,
        mpath,
      );
    }
    if (!manifest.complete)
      problems.push(`${name} is incomplete (killed or failed midway): rerun its command${manifest.command ? `: ${manifest.command}` : ''}`);
    shards.push({ dir, name, manifest });
  }
  // Shards of different runs are named before incompleteness: finishing them would not help.
  const first = shards[0];
  for (const s of shards.slice(1)) {
    const a = first!.manifest;
    const b = s.manifest;
    const fields = [...new Set([...Object.keys(a.run), ...Object.keys(b.run)])].filter((k) => a.run[k] !== b.run[k]);
    const diffs = fields.map((k) => `${k} ${JSON.stringify(a.run[k])} (${first!.name}) vs ${JSON.stringify(b.run[k])} (${s.name})`);
    if (a.totalDigest !== b.totalDigest || a.total !== b.total)
      diffs.push(`the run's items (${a.total} in ${first!.name}, ${b.total} in ${s.name}, digests differ)`);
    if (diffs.length > 0)
      throw new ClipDecoderError(
        'SHARD_MISMATCH',
        `${parent}: ${first!.name} and ${s.name} are shards of different runs: ${diffs.join('; ')}; rerun the odd shard with the run's settings, or keep each run's shards in its own folder`,
        s.dir,
      );
  }
  if (problems.length > 0) throw new ClipDecoderError('SHARD_INCOMPLETE', `${parent}: ${problems.join('; ')}`, parent);
  const owner = new Map<string, string>();
  const doubled: string[] = [];
  for (const s of shards)
    for (const k of s.manifest.keys) {
      const o = owner.get(k);
      if (o !== undefined) doubled.push(`"${k}" (${o} and ${s.name})`);
      else owner.set(k, s.name);
    }
  if (doubled.length > 0)
    throw new ClipDecoderError(
      'SHARD_MISMATCH',
      `${parent}: ${doubled.length} item(s) in two shards: ${doubled.slice(0, 10).join(', ')}${doubled.length > 10 ? ', …' : ''}`,
      parent,
    );
  const total = first!.manifest.total;
  if (owner.size !== total || keySetDigest(owner.keys()) !== first!.manifest.totalDigest)
    throw new ClipDecoderError(
      'SHARD_MISMATCH',
      `${parent}: the shards hold ${owner.size} item(s) together, the run has ${total}${owner.size === total ? ' (other ones)' : ''}; ${owner.size < total ? 'some are missing' : 'some are extra'}`,
      parent,
    );
  const order = shards
    .flatMap((s, i) => s.manifest.keys.map((key, j) => ({ key, shard: i, at: s.manifest.positions?.[j] ?? -1 })))
    .sort((a, b) => a.at - b.at)
    .map(({ key, shard }) => ({ key, shard }));
  return { count, shards, order };
}

/** Names what `expected` and `got` differ in (missing and extra keys), for messages; empty when equal. */
export function keyDifferences(expected: Iterable<string>, got: ReadonlySet<string>, limit = 10): string[] {
  const exp = new Set(expected);
  const missing = [...exp].filter((k) => !got.has(k));
  const extra = [...got].filter((k) => !exp.has(k));
  const list = (a: string[]) =>
    `${a
      .slice(0, limit)
      .map((k) => `"${k}"`)
      .join(', ')}${a.length > limit ? ', …' : ''}`;
  return [
    ...(missing.length > 0 ? [`${missing.length} missing: ${list(missing)}`] : []),
    ...(extra.length > 0 ? [`${extra.length} not in the dataset: ${list(extra)}`] : []),
  ];
}
