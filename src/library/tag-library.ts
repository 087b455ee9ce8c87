// `tag DIR --out results.jsonl [--xmp]`: tags a photo library incrementally. Images already in the results file
// from the same file state, model, head and label set are skipped; the rest are tagged, their sidecars merged
// (with xmp) and then their record appended, so an image whose sidecar failed is retried by the next run.
import type { Tagger } from '../tagger/tagger.ts';
import { labelSetIdentity, modelIdentity, scoringIdentity } from './identity.ts';
import { planImages, type LibrarySummary } from './plan.ts';
import { ResultsFile, type ResultIdentity } from './results.ts';
import { sidecarPath, XmpSidecars, type SidecarChange, type SidecarNaming } from './xmp.ts';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { beginShard, shardFiles, shardName, type ShardSpec } from '../scale/shard.ts';

export interface XmpOptions {
  naming?: SidecarNaming;
  /** Keywords: labels with probability ≥ threshold (default: the tagger's calibrated threshold, else 0.5) ... */
  threshold?: number;
  /** ... at most the `top` most probable. */
  top?: number;
}

export interface TagLibraryOptions {
  /** Results file (JSONL, see results.ts). */
  out: string;
  /** Redo every image and start the results file anew. */
  force?: boolean;
  /** Write XMP sidecars. */
  xmp?: XmpOptions;
  /** Write nothing (neither results nor sidecars); report what would change through onSidecar. */
  dryRun?: boolean;
  batchSize?: number;
  /** Tag only this shard's images, into OUT.shards/shard-i-of-n/results.jsonl with its manifest (src/scale/shard.ts). */
  shard?: ShardSpec;
  onProgress?: (done: number, total: number) => void;
  /** Each sidecar change (planned, with dryRun). */
  onSidecar?: (change: SidecarChange) => void;
  /** Each failure as it happens (also listed in the summary). */
  onFailure?: (message: string) => void;
  onWarning?: (message: string) => void;
}

/** The identity stored in the results records of this tagger and label set. */
export async function tagIdentity(tagger: Tagger, labels: readonly string[]): Promise<ResultIdentity> {
  return {
    model: await modelIdentity(tagger.model, tagger.head !== null && tagger.meta.extra?.keepCls === true),
    head: scoringIdentity(tagger.head ? tagger.headDir : null, tagger.calibrationPath),
    labelSet: labelSetIdentity(labels),
  };
}

/** Where shard i of n of a results file OUT goes: OUT.shards/shard-i-of-n/results.jsonl (`results merge OUT` joins them). */
export function resultsShardPath(out: string, spec: ShardSpec): string {
  return join(`${out}.shards`, shardName(spec), 'results.jsonl');
}

export async function tagLibrary(
  tagger: Tagger,
  allFiles: readonly string[],
  labels: readonly string[],
  options: TagLibraryOptions,
): Promise<LibrarySummary & { results: string }> {
  const identity = await tagIdentity(tagger, labels);
  const spec = options.shard;
  const sharded = spec && shardFiles(allFiles, spec);
  const files = sharded ? sharded.files : allFiles;
  const outFile = spec ? resultsShardPath(options.out, spec) : options.out;
  let finish: (() => Promise<void>) | undefined;
  if (spec && !options.dryRun) {
    const dir = join(`${options.out}.shards`, shardName(spec));
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new ClipDecoderError(
        'OUTPUT_UNWRITABLE',
        `--out ${dir}: cannot create the shard's folder (${(e as NodeJS.ErrnoException).code ?? e})`,
        dir,
        {
          cause: e,
        },
      );
    }
    finish = await beginShard(
      dir,
      'results',
      spec,
      { ...identity },
      sharded!.allKeys,
      files.map((f) => resolve(f)),
    );
  }
  const xmp = options.xmp;
  // exiftool starts before the results file opens: a failed start (no Perl) must not have emptied it (--force).
  const sidecars = xmp ? await XmpSidecars.start() : undefined;
  let results: ResultsFile;
  try {
    results = ResultsFile.open(outFile, identity, { force: options.force, readOnly: options.dryRun, onWarning: options.onWarning });
  } catch (e) {
    await sidecars?.end();
    throw e;
  }
  const { todo, summary } = planImages(files, (p, s) => results.isDone(p, s), options.force);
  const fail = (path: string, message: string) => {
    summary.failed++;
    summary.failures.push({ path, message });
    options.onFailure?.(message);
  };
  for (const f of summary.failures) options.onFailure?.(f.message);
  const threshold = xmp?.threshold ?? tagger.threshold ?? 0.5;
  // Two images named for one sidecar (photo.jpg and photo.png with photo.xmp): an image done in an earlier run
  // keeps it, else the first input claims it; the other is refused, in this run and in later ones.
  const sidecarOwner = new Map<string, string>();
  if (xmp) {
    const pending = new Set(todo.map((t) => t.file));
    const claim = (f: string) => {
      const s = sidecarPath(f, xmp.naming ?? 'append');
      if (!sidecarOwner.has(s)) sidecarOwner.set(s, f);
    };
    for (const f of files) if (!pending.has(f)) claim(f);
    for (const f of files) if (pending.has(f)) claim(f);
  }
  try {
    for await (const r of tagger.tagStream(
      todo.map((t) => t.file),
      labels,
      { batchSize: options.batchSize, onProgress: options.onProgress },
    )) {
      const t = todo[r.index]!;
      if (r.error) {
        fail(t.file, r.error.message);
        continue;
      }
      if (sidecars) {
        const sidecar = sidecarPath(t.file, xmp!.naming ?? 'append');
        const owner = sidecarOwner.get(sidecar);
        if (owner !== undefined && owner !== t.file) {
          fail(t.file, `${sidecar}: is also the sidecar of ${owner}: skipped (use --xmp-naming append for one sidecar per image)`);
          continue;
        }
        let kept = r.labels.filter((l) => l.probability >= threshold);
        if (xmp!.top !== undefined) kept = kept.slice(0, xmp!.top);
        try {
          const change = await sidecars.update(sidecar, { labels: kept, threshold, ...identity }, { dryRun: options.dryRun });
          options.onSidecar?.(change);
        } catch (e) {
          fail(t.file, (e as Error).message);
          continue;
        }
      }
      summary.done++;
      if (!options.dryRun) {
        const probabilities = Object.fromEntries(r.labels.map((l) => [l.label, Number(l.probability.toFixed(6))]));
        results.append({ path: t.path, size: t.stamp.size, mtimeNs: t.stamp.mtimeNs, probabilities });
      }
    }
  } finally {
    results.close();
    await sidecars?.end();
  }
  if (summary.failed === 0) await finish?.();
  return { ...summary, results: outFile };
}
