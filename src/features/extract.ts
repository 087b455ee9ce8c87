// Feature extraction: every image of a dataset through the CLIP vision model into the feature cache, pipelined
// (decode overlaps inference), resumable (finished records are skipped), with optional augmented views.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClipModel } from '../clip/model.ts';
import type { PreprocessOptions } from '../clip/preprocess.ts';
import { ClipDecoderError } from '../errors.ts';
import { statStamp } from '../util/fs.ts';
import { createRng } from '../data/random.ts';
import { imagePath, splitItems, type Dataset } from '../data/types.ts';
import { FeatureCache, cacheFormat, type CacheDtype, type CacheMeta, type CacheRecord } from './cache.ts';

function allFinite(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return false;
  return true;
}

export async function hashFile(path: string, h: ReturnType<typeof createHash>): Promise<void> {
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
}

/**
 * Fingerprint of everything that determines a model's features: configs, vision weights, CLS option.
 * `visionModelPath` names another ONNX variant of the same folder to hash (default: the one the model runs).
 */
export async function modelFingerprint(
  model: ClipModel,
  keepCls: boolean,
  visionModelPath = model.folder.visionModelPath,
): Promise<string> {
  const h = createHash('sha256');
  h.update(readFileSync(join(model.folder.dir, 'config.json')));
  h.update(readFileSync(join(model.folder.dir, 'preprocessor_config.json')));
  await hashFile(visionModelPath, h);
  h.update(`keepCls=${keepCls}`);
  return h.digest('hex');
}

/** Fingerprint of a dataset's images: ids and files, in order. */
export function datasetFingerprint(items: readonly { id: string; file: string }[]): string {
  const h = createHash('sha256');
  for (const it of items) h.update(`${it.id}\t${it.file}\n`);
  return h.digest('hex');
}

/**
 * The state of an image file a cached record was computed from: size and modification time (ns). Overwriting
 * the image changes it, so its records are recomputed. Undefined when the file cannot be stat'ed.
 */
export function sourceStamp(path: string): string | undefined {
  const st = statStamp(path);
  return st && `${st.size}:${st.mtimeNs}`;
}

/** Cache key of an image's view: the plain view is the id itself. */
export function viewKey(id: string, view: number): string {
  return view === 0 ? id : `${id}#${view}`;
}

/**
 * The augmentation of view `view` (≥ 1) of image `id`: a random crop of 60–100 % of the area (aspect 3/4–4/3)
 * and a mirror with probability 1/2, drawn from a generator seeded by (seed, id, view), so reruns agree.
 */
export function viewAugmentation(id: string, view: number, seed: number): NonNullable<PreprocessOptions['augment']> {
  const h = createHash('sha256').update(`${seed}\t${id}\t${view}`).digest();
  const rng = createRng(h.readUInt32LE(0));
  const area = 0.6 + 0.4 * rng.next();
  const aspect = Math.exp(Math.log(3 / 4) + (Math.log(4 / 3) - Math.log(3 / 4)) * rng.next());
  const width = Math.min(1, Math.sqrt(area * aspect));
  const height = Math.min(1, Math.sqrt(area / aspect));
  return { flip: rng.next() < 0.5, crop: { left: (1 - width) * rng.next(), top: (1 - height) * rng.next(), width, height } };
}

export interface ExtractItem {
  id: string;
  /** Absolute or root-relative path of the image. */
  path: string;
  /** Augmented views to add beyond the plain one (0 for test images). */
  extraViews?: number;
}

/** What a dataset's feature cache holds: every train and val image with its extra views, every test image. */
export function datasetExtractItems(dataset: Dataset, extraViews: number): ExtractItem[] {
  return [
    ...[...splitItems(dataset, 'train'), ...splitItems(dataset, 'val')].map((it) => ({
      id: it.id,
      path: imagePath(dataset, it),
      extraViews,
    })),
    ...splitItems(dataset, 'test').map((it) => ({ id: it.id, path: imagePath(dataset, it) })),
  ];
}

/** The cache keys of extraction items (each view of each image). */
export function extractKeys(items: readonly ExtractItem[]): string[] {
  return items.flatMap((it) => Array.from({ length: 1 + (it.extraViews ?? 0) }, (_, v) => viewKey(it.id, v)));
}

export interface ExtractOptions {
  cacheDir: string;
  /** Fingerprint of the dataset (refuses a cache made for another one). */
  datasetFingerprint: string;
  keepCls?: boolean;
  batchSize?: number;
  seed?: number;
  pixelLimit?: number;
  /** How the cache stores values (default: the existing cache's, else float32). */
  dtype?: CacheDtype;
  /** Called once the cache is open (a sharded run writes its manifest then), before any image is encoded. */
  onCacheOpen?: (meta: CacheMeta) => Promise<void>;
  onProgress?: (done: number, total: number) => void;
  /** Called for each image that fails; extraction goes on. */
  onError?: (error: ClipDecoderError) => void;
}

export interface ExtractSummary {
  total: number;
  computed: number;
  /** Of the records to compute, those that were cached but whose image file changed since (size or mtime). */
  changed: number;
  skipped: number;
  failed: number;
  seconds: number;
}

/** The dtype of the cache in `dir`, float32 when there is none (or it cannot be read: opening it will say why). */
function existingDtype(dir: string): CacheDtype {
  try {
    return existsSync(join(dir, 'meta.json'))
      ? ((JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as CacheMeta).dtype ?? 'float32')
      : 'float32';
  } catch {
    return 'float32';
  }
}

/** Extracts every missing (image, view) record into the cache. Safe to kill at any moment and rerun. */
export async function extractFeatures(model: ClipModel, items: readonly ExtractItem[], options: ExtractOptions): Promise<ExtractSummary> {
  const t0 = performance.now();
  const keepCls = options.keepCls ?? false;
  const dtype = options.dtype ?? existingDtype(options.cacheDir);
  const cache = await FeatureCache.open(options.cacheDir, {
    format: cacheFormat(dtype),
    modelFingerprint: await modelFingerprint(model, keepCls),
    datasetFingerprint: options.datasetFingerprint,
    modelId: model.id,
    numTokens: model.numTokens,
    tokenDim: model.tokenDim,
    embedDim: model.embedDim,
    keepCls,
    ...(dtype === 'float16' ? { dtype } : {}),
  });
  await options.onCacheOpen?.(cache.meta);
  const seed = options.seed ?? 0;
  const todo: { key: string; path: string; source?: string; augment?: PreprocessOptions['augment'] }[] = [];
  let total = 0;
  let changed = 0;
  for (const it of items) {
    const source = sourceStamp(it.path);
    for (let v = 0; v <= (it.extraViews ?? 0); v++) {
      total++;
      const key = viewKey(it.id, v);
      if (cache.has(key) && cache.sourceOf(key) === source) continue;
      if (cache.has(key)) changed++;
      todo.push({ key, path: it.path, source, augment: v === 0 ? undefined : viewAugmentation(it.id, v, seed) });
    }
  }
  const skipped = total - todo.length;
  let failed = 0;
  let computed = 0;
  const B = Math.max(1, options.batchSize ?? 16);
  try {
    if (model.numTokens * model.tokenDim + model.embedDim !== cache.recordFloats) {
      throw new ClipDecoderError(
        'CACHE_MISMATCH',
        `${options.cacheDir}: the model yields ${model.numTokens}×${model.tokenDim} tokens, the cache holds ${cache.meta.numTokens}×${cache.meta.tokenDim}`,
        options.cacheDir,
      );
    }
    // The model's pipeline decodes batch k+1 while batch k runs; each batch is committed to the cache as it ends.
    let pending: CacheRecord[] = [];
    const results = model.encodeImages(
      todo.map((t) => ({ source: t.path, augment: t.augment })),
      {
        batchSize: B,
        pixelLimit: options.pixelLimit,
        onProgress: (done) => {
          cache.append(pending);
          computed += pending.length;
          pending = [];
          options.onProgress?.(skipped + done, total);
        },
      },
    );
    for await (const r of results) {
      if (r.error) {
        failed++;
        options.onError?.(r.error);
      } else if (!allFinite(r.tokens) || !allFinite(r.imageEmbed)) {
        failed++;
        const t = todo[r.index]!;
        options.onError?.(
          new ClipDecoderError(
            'IMAGE_INVALID',
            `${t.path}: the CLIP model gave non-finite features for "${t.key}"; they were not cached`,
            t.path,
          ),
        );
      } else {
        const t = todo[r.index]!;
        pending.push({ key: t.key, tokens: r.tokens, imageEmbed: r.imageEmbed, source: t.source });
      }
    }
  } finally {
    cache.close();
  }
  return { total, computed, changed, skipped, failed, seconds: (performance.now() - t0) / 1000 };
}
