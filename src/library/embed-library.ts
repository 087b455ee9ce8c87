// `embed DIR --out EMB/`: image embeddings (and patch tokens by option) as float32 .npy shards plus one JSONL
// metadata file per shard, in clip-retrieval's layout and naming, so numpy, autofaiss and clip-retrieval's
// own tools read them:
//
//   EMB/img_emb/img_emb_<k>.npy              [n_k, E]     float32, L2-normalised (as clip-retrieval's are)
//   EMB/patch_tokens/patch_tokens_<k>.npy    [n_k, T, C]  float32 (with tokens), row i ↔ row i above
//   EMB/metadata/metadata_<k>.jsonl          n_k lines {"image_path","size","mtime_ns"}, row i ↔ line i
//   EMB/embeddings.json                      model identity, shapes, shard size (what the folder was made with)
//
// Resumable: each batch is written (rows, fsync; metadata lines, fsync) and then counted in the .npy headers,
// the commit point (src/library/npy.ts); reopening cuts every shard to the rows all three agree on, so a kill
// loses at most the batch in flight and every file stays readable meanwhile. A rerun skips images whose path,
// size and mtime are in the metadata; a changed image gets a new row (its older row stays: readers that
// dedupe by image_path keep the last).
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ClipModel } from '../clip/model.ts';
import { l2normalizeRows } from '../clip/prompts.ts';
import { ClipDecoderError } from '../errors.ts';
import { writeFileAtomic, writeAll } from '../util/fs.ts';
import { modelIdentity } from './identity.ts';
import { NpyAppender } from './npy.ts';
import { planImages, type LibrarySummary, type Stamp } from './plan.ts';
import { beginShard, shardFiles, shardName, type ShardSpec } from '../scale/shard.ts';

export interface EmbedLibraryOptions {
  /** Output folder. */
  out: string;
  /** Also write the patch tokens [T, C] of each image. */
  tokens?: boolean;
  /** L2-normalise the image embeddings (default true, as clip-retrieval). */
  normalize?: boolean;
  /** Rows per shard (default 100,000). */
  shardSize?: number;
  /** Start the folder anew (its shards are deleted) whatever it holds. */
  force?: boolean;
  batchSize?: number;
  /** Embed only this shard's images, into OUT/shard-i-of-n/ with its manifest (src/scale/shard.ts). */
  shard?: ShardSpec;
  onProgress?: (done: number, total: number) => void;
}

export interface EmbeddingsMeta {
  format: 'clip-decoder-embeddings';
  version: 1;
  model: string;
  embedDim: number;
  normalized: boolean;
  /** [T, C] of the patch tokens, or null when they are not written. */
  tokens: [number, number] | null;
  shardSize: number;
}

const DIRS = ['img_emb', 'patch_tokens', 'metadata'] as const;
export const embeddingsFile = (out: string, dir: string, k: number, ext: string) => join(out, dir, `${dir}_${k}.${ext}`);
const shardFile = embeddingsFile;
export const metaFile = (out: string, k: number) => join(out, 'metadata', `metadata_${k}.jsonl`);

/** One shard open for appending: its .npy files and metadata. */
export class Shard {
  readonly k: number;
  readonly emb: NpyAppender;
  readonly tok: NpyAppender | undefined;
  private readonly metaFd: number;
  /** Bytes of the metadata file that belong to committed rows. */
  private metaEnd: number;

  constructor(out: string, k: number, meta: EmbeddingsMeta, done: Map<string, Stamp>) {
    this.k = k;
    this.emb = NpyAppender.open(shardFile(out, 'img_emb', k, 'npy'), [meta.embedDim]);
    this.tok = meta.tokens ? NpyAppender.open(shardFile(out, 'patch_tokens', k, 'npy'), meta.tokens) : undefined;
    const mpath = metaFile(out, k);
    const text = existsSync(mpath) ? readFileSync(mpath, 'utf8') : '';
    // Complete lines that parse, up to the first that does not: a crash can only tear the last.
    const rows: { image_path: string; size: number; mtime_ns: string }[] = [];
    const ends: number[] = [];
    for (const line of text.split('\n').slice(0, -1)) {
      try {
        rows.push(JSON.parse(line));
      } catch {
        break;
      }
      ends.push((ends.at(-1) ?? 0) + Buffer.byteLength(line) + 1);
    }
    const n = Math.min(this.emb.rows, this.tok?.rows ?? Number.POSITIVE_INFINITY, rows.length);
    if (this.emb.rows !== n) this.emb.commit(n);
    if (this.tok && this.tok.rows !== n) this.tok.commit(n);
    this.metaFd = openSync(mpath, existsSync(mpath) ? 'r+' : 'w+');
    this.metaEnd = n === 0 ? 0 : ends[n - 1]!;
    if (this.metaEnd !== Buffer.byteLength(text)) ftruncateSync(this.metaFd, this.metaEnd);
    for (const r of rows.slice(0, n)) done.set(r.image_path, { size: r.size, mtimeNs: r.mtime_ns });
  }

  get rows(): number {
    return this.emb.rows;
  }

  /** Appends rows and commits them (see the file comment for the order). */
  append(items: { path: string; stamp: Stamp; embed: Float32Array; tokens: Float32Array }[]): void {
    for (const it of items) {
      this.emb.write(it.embed);
      this.tok?.write(it.tokens);
    }
    this.emb.flush();
    this.tok?.flush();
    const lines = items
      .map((it) => `${JSON.stringify({ image_path: it.path, size: it.stamp.size, mtime_ns: it.stamp.mtimeNs })}\n`)
      .join('');
    const buf = Buffer.from(lines);
    writeAll(this.metaFd, buf, this.metaEnd);
    this.metaEnd += buf.length;
    fsyncSync(this.metaFd);
    this.tok?.commit();
    this.emb.commit();
  }

  close(): void {
    this.emb.close();
    this.tok?.close();
    closeSync(this.metaFd);
  }
}

export function readMeta(path: string): EmbeddingsMeta | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as EmbeddingsMeta;
  } catch (e) {
    throw new ClipDecoderError(
      'RESULTS_MISMATCH',
      `--out: ${path} is unreadable (${(e as Error).message}); use --force to start anew`,
      path,
    );
  }
}

/** Embeds images into EMB/ (layout above), skipping those already there from the same file and model. */
export async function embedLibrary(model: ClipModel, allFiles: readonly string[], options: EmbedLibraryOptions): Promise<LibrarySummary> {
  const { shard: spec } = options;
  const sharded = spec && shardFiles(allFiles, spec);
  const files = sharded ? sharded.files : allFiles;
  const out = spec ? join(options.out, shardName(spec)) : options.out;
  const normalize = options.normalize ?? true;
  const { imageSize, patchSize } = model.folder;
  const keepCls = model.numTokens > (imageSize.height / patchSize) * (imageSize.width / patchSize); // CLS kept among the tokens
  const meta: EmbeddingsMeta = {
    format: 'clip-decoder-embeddings',
    version: 1,
    model: await modelIdentity(model, keepCls),
    embedDim: model.embedDim,
    normalized: normalize,
    tokens: options.tokens ? [model.numTokens, model.tokenDim] : null,
    shardSize: options.shardSize ?? 100_000,
  };
  const metaPath = join(out, 'embeddings.json');
  try {
    for (const d of DIRS) mkdirSync(join(out, d), { recursive: true });
  } catch (e) {
    throw new ClipDecoderError(
      'OUTPUT_UNWRITABLE',
      `--out ${out}: cannot create the folder (${(e as NodeJS.ErrnoException).code ?? e})`,
      out,
      {
        cause: e,
      },
    );
  }
  const old = options.force ? undefined : readMeta(metaPath);
  if (old) {
    const differs = (['format', 'version', 'model', 'embedDim', 'normalized', 'shardSize'] as const)
      .filter((k) => old[k] !== meta[k])
      .map((k) => `${k} ${JSON.stringify(old[k])} (this run: ${JSON.stringify(meta[k])})`);
    if (JSON.stringify(old.tokens) !== JSON.stringify(meta.tokens))
      differs.push(`patch tokens ${JSON.stringify(old.tokens)} (this run: ${JSON.stringify(meta.tokens)})`);
    if (differs.length > 0)
      throw new ClipDecoderError(
        'RESULTS_MISMATCH',
        `--out ${out}: holds embeddings made otherwise: ${differs.join(', ')}; name a new --out folder, or pass --force to start this one anew`,
        out,
      );
  } else {
    // A new folder, or --force: our shards go (nothing else in the folder is touched).
    for (const d of DIRS)
      for (const f of readdirSync(join(out, d))) if (new RegExp(`^${d}_\\d+\\.(npy|jsonl)$`).test(f)) rmSync(join(out, d, f));
    await writeFileAtomic(metaPath, `${JSON.stringify(meta, null, 2)}\n`);
  }
  const finish =
    spec &&
    (await beginShard(
      out,
      'embeddings',
      spec,
      {
        model: meta.model,
        embedDim: meta.embedDim,
        normalized: meta.normalized,
        tokens: JSON.stringify(meta.tokens),
        shardSize: meta.shardSize,
      },
      sharded!.allKeys,
      files.map((f) => resolve(f)),
    ));

  const done = new Map<string, Stamp>();
  let shard = new Shard(out, 0, meta, done);
  while (existsSync(metaFile(out, shard.k + 1))) {
    shard.close();
    shard = new Shard(out, shard.k + 1, meta, done);
  }
  const { todo, summary } = planImages(files, (p, s) => done.get(p)?.size === s.size && done.get(p)?.mtimeNs === s.mtimeNs);
  const pending: Parameters<Shard['append']>[0] = [];
  const commit = () => {
    while (pending.length > 0) {
      if (shard.rows >= meta.shardSize) {
        shard.close();
        shard = new Shard(out, shard.k + 1, meta, done);
      }
      try {
        shard.append(pending.splice(0, meta.shardSize - shard.rows));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? e;
        throw new ClipDecoderError('OUTPUT_UNWRITABLE', `--out ${out}: cannot write shard ${shard.k} (${code})`, out, { cause: e });
      }
    }
  };
  const batchSize = options.batchSize ?? 16;
  try {
    for await (const r of model.encodeImages(
      todo.map((t) => t.file),
      { batchSize, onProgress: options.onProgress },
    )) {
      const t = todo[r.index]!;
      if (r.error) {
        summary.failed++;
        summary.failures.push({ path: t.file, message: r.error.message });
        continue;
      }
      const embed = normalize ? l2normalizeRows(r.imageEmbed.slice(), meta.embedDim) : r.imageEmbed;
      pending.push({ path: t.path, stamp: t.stamp, embed, tokens: r.tokens });
      summary.done++;
      if (pending.length >= batchSize) commit();
    }
    commit();
  } finally {
    shard.close();
  }
  if (summary.failed === 0) await finish?.();
  return summary;
}
