// The static in-browser tagger: the files of a page that tags with no server (HTML + JS, onnxruntime-web's WASM
// build, @huggingface/tokenizers, the CLIP folder's ONNX towers and tokenizer, the head as ONNX, a manifest).
// `export-web OUTDIR` writes them; `serve` answers them under /web/. One list of files serves both.
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFile, stat } from 'node:fs/promises';
import type { ClipFolder } from '../clip/folder.ts';
import { TextTokenizer } from '../clip/tokenizer.ts';
import { ClipDecoderError } from '../errors.ts';
import { residualWeights } from '../head/calibration.ts';
import { headToOnnx } from '../head/export-onnx.ts';
import type { Fusion } from '../head/fusion.ts';
import type { ClipDecoderHead } from '../head/head.ts';
import { pageHtml } from '../serve/page.ts';
import type { Tagger } from '../tagger/tagger.ts';
import type { CheckpointMeta } from '../train/checkpoint.ts';
import { writeFileAtomic } from '../util/fs.ts';

/** One file of the page: bytes made here, or a file copied as it is. */
export interface WebFile {
  /** Path inside the page's folder, '/'-separated. */
  path: string;
  type: string;
  data?: Uint8Array | string;
  file?: string;
}

export interface WebBundleInput {
  folder: ClipFolder;
  head: ClipDecoderHead;
  meta: CheckpointMeta;
  /** Labels pre-filled in the page (default: the first 8 the head was trained on). */
  defaultLabels?: string[];
  /** How the page turns the head's logits into probabilities (default: the head's own rule, from meta). */
  scoring?: WebScoring;
}

/**
 * The page's scoring (manifest.scoring), as the Tagger's: `weights` null is sigmoid(head logit); else
 * sigmoid(w.global · cos(image embed, label embed) + w.local · head logit + w.bias) with `trained` weights for
 * `trainedLabels` and `novel` for the rest (src/head/fusion.ts; lib.js fusedProbabilities).
 */
export interface WebScoring {
  mode: { scoring: 'fused' | 'residual' | 'head'; calibrated: boolean };
  weights: Pick<Fusion, 'trained' | 'novel'> | null;
  trainedLabels: string[];
  /** The calibration's decision threshold: the page marks labels at or above it. */
  threshold: number | null;
}

/** A head's scoring without a calibration: the residual rule for a residual head, else its logits alone. */
export function uncalibratedScoring(meta: CheckpointMeta, headDir = 'the head'): WebScoring {
  const residual = residualWeights(meta, headDir);
  return {
    mode: { scoring: residual ? 'residual' : 'head', calibrated: false },
    weights: residual ?? null,
    trainedLabels: [...meta.labels],
    threshold: null,
  };
}

const ASSETS = fileURLToPath(new URL('./assets/', import.meta.url));
const require = createRequire(import.meta.url);
/** onnxruntime-web's WASM build: the ES module, its Emscripten glue and the SIMD + threads binary. */
const ORT_FILES = ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  mjs: 'text/javascript; charset=utf-8',
  json: 'application/json; charset=utf-8',
  wasm: 'application/wasm',
  onnx: 'application/octet-stream',
};
const typeOf = (path: string) => TYPES[path.split('.').pop()!] ?? 'application/octet-stream';

function pageIndex(modelId: string): string {
  return pageHtml({
    title: 'clip-decoder in the browser',
    subtitle: `Tagging runs in this page (${modelId} + CLIP-Decoder head, ONNX Runtime Web): nothing is uploaded. Click a label to see where it looked.`,
    // A module graph that cannot be fetched (a missing file, or the page opened from file://) fires this.
    script:
      '<script type="module" src="app.js" onerror="const s = document.getElementById(\'status\'); ' +
      "s.className = 'error'; s.textContent = 'cannot load the page\\'s scripts (app.js, lib.js or vendor/): serve the whole folder over HTTP';\"></script>",
  });
}

/** The page's files for a CLIP folder and a head (closed-set heads and mismatched widths are refused). */
export function webBundle(input: WebBundleInput): WebFile[] {
  const { folder, head, meta } = input;
  const cfg = head.config;
  if (cfg.mode === 'zero-shot' && (cfg.inputDim !== folder.visionHidden || cfg.queryDim !== folder.projectionDim)) {
    throw new ClipDecoderError(
      'INPUT_INVALID',
      `the head expects ${cfg.inputDim}-wide image tokens and ${cfg.queryDim}-wide text embeddings (trained with ${meta.clipModel}), ` +
        `but ${folder.dir} gives ${folder.visionHidden} and ${folder.projectionDim}: pass the matching --model`,
      '--model',
    );
  }
  const headBytes = headToOnnx(head, { meta });
  const keepCls = meta.extra?.keepCls === true;
  const manifest = {
    format: 'clip-decoder-web/1',
    model: folder.id,
    family: folder.spec.family,
    imageSize: folder.imageSize,
    grid: { height: folder.imageSize.height / folder.patchSize, width: folder.imageSize.width / folder.patchSize },
    embedDim: folder.projectionDim,
    preprocess: folder.preprocess,
    vision: {
      input: 'pixel_values',
      output: 'last_hidden_state',
      imageEmbeds: folder.spec.imageEmbedsOutput,
      dropCls: folder.spec.hasCls && !keepCls,
    },
    scoring: input.scoring ?? uncalibratedScoring(meta),
    text: {
      output: folder.spec.textEmbedsOutput,
      ...textTokenOptions(folder),
    },
    prompts: {
      templates: meta.promptTemplates.length ? meta.promptTemplates : ['a photo of {label}'],
      normalize: meta.extra?.normalizeQueries !== false,
    },
    defaultLabels: input.defaultLabels ?? meta.labels.slice(0, 8),
    files: {
      vision: 'model/onnx/vision_model.onnx',
      text: 'model/onnx/text_model.onnx',
      tokenizer: 'model/tokenizer.json',
      tokenizerConfig: 'model/tokenizer_config.json',
      head: 'head.onnx',
    },
  };
  const ortDir = dirname(require.resolve('onnxruntime-web/wasm'));
  const tokDir = dirname(require.resolve('@huggingface/tokenizers'));
  const files: WebFile[] = [
    { path: 'index.html', type: '', data: pageIndex(folder.id) },
    { path: 'app.js', type: '', file: join(ASSETS, 'app.js') },
    { path: 'lib.js', type: '', file: join(ASSETS, 'lib.js') },
    { path: 'manifest.json', type: '', data: `${JSON.stringify(manifest, null, 1)}\n` },
    { path: 'head.onnx', type: '', data: headBytes },
    ...ORT_FILES.map((f) => ({ path: `vendor/${f}`, type: '', file: join(ortDir, f) })),
    { path: 'vendor/tokenizers.min.mjs', type: '', file: join(tokDir, 'tokenizers.min.mjs') },
    { path: manifest.files.vision, type: '', file: folder.visionModelPath },
    { path: manifest.files.text, type: '', file: folder.textModelPath },
    ...['tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json', 'config.json'].map((f) => ({
      path: `model/${f}`,
      type: '',
      file: join(folder.dir, f),
    })),
  ];
  for (const f of files) f.type = typeOf(f.path);
  return files;
}

/** How the text tower's inputs are built (as ClipModel.tokenize does): truncation, padding, CLIP's end token. */
function textTokenOptions(folder: ClipFolder) {
  const tok = new TextTokenizer(folder.tokenizerJSON, folder.tokenizerConfig, join(folder.dir, 'tokenizer.json'));
  return {
    maxLength: Math.min(folder.textMaxLength, tok.modelMaxLength),
    padding: folder.spec.padding,
    padId: tok.padId,
    padLeft: tok.padLeft,
    // CLIP pools at the end-of-text token: a truncated text must still end with it
    eosId: folder.spec.family === 'clip' ? (tok.eosId ?? tok.tokenToId('<|endoftext|>')) : undefined,
  };
}

/** Total bytes of the page's files. */
export async function bundleBytes(files: WebFile[]): Promise<number> {
  let n = 0;
  for (const f of files)
    n += f.file ? (await stat(f.file)).size : typeof f.data === 'string' ? Buffer.byteLength(f.data) : f.data!.byteLength;
  return n;
}

/** Writes the page into outDir (each file atomically); returns the files and their total size. */
export async function writeWebBundle(outDir: string, files: WebFile[]): Promise<{ files: number; bytes: number }> {
  try {
    for (const f of files) {
      const dest = join(outDir, f.path);
      await mkdir(dirname(dest), { recursive: true });
      await writeFileAtomic(dest, f.file ? await readFile(f.file) : f.data!);
    }
  } catch (e) {
    throw new ClipDecoderError(
      'OUTPUT_UNWRITABLE',
      `${outDir}: cannot write the page (${(e as NodeJS.ErrnoException).code ?? e})`,
      outDir,
      {
        cause: e,
      },
    );
  }
  return { files: files.length, bytes: await bundleBytes(files) };
}

export interface ExportWebOptions {
  /** CLIP model folder or hub id. */
  model: string;
  /** Head checkpoint folder (its calibration.json, if any, scores the page). */
  head: string;
  /** Calibration file instead of the head folder's calibration.json. */
  calibration?: string;
  out: string;
  defaultLabels?: string[];
}

/** The page's scoring for a loaded Tagger: the same weights and threshold as `tag` and `serve` use. */
export function taggerWebScoring(tagger: Tagger): WebScoring {
  if (!tagger.head || tagger.mode.scoring === 'clip')
    throw new ClipDecoderError('EXPORT_UNSUPPORTED', 'the in-browser page runs a head: plain CLIP (--head none) has none', '--head');
  const w = tagger.fusionWeights;
  return {
    mode: { scoring: tagger.mode.scoring, calibrated: tagger.mode.calibrated },
    weights: w ? { trained: { ...w.trained }, novel: { ...w.novel } } : null,
    trainedLabels: [...(tagger.head.trainedLabels ?? tagger.meta.labels)],
    threshold: tagger.threshold,
  };
}

/** `export-web`: loads the model folder and the head (with its calibration, as `tag` does), writes the page. */
export async function exportWeb(opts: ExportWebOptions): Promise<{ files: number; bytes: number }> {
  const { Tagger } = await import('../tagger/tagger.ts');
  const tagger = await Tagger.load({ model: opts.model, head: opts.head, calibration: opts.calibration, threads: 1 });
  try {
    const { head, meta } = tagger;
    const files = webBundle({
      folder: tagger.model.folder,
      head: head!,
      meta,
      defaultLabels: opts.defaultLabels,
      scoring: taggerWebScoring(tagger),
    });
    return await writeWebBundle(opts.out, files);
  } finally {
    await tagger.dispose();
  }
}
