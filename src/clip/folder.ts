// A CLIP or SigLIP model folder in the Hugging Face / transformers.js layout, found on disk (or in
// transformers.js's cache for a hub id), its files checked and its configs parsed before any ONNX session is
// created.
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { DTYPE_SUFFIX, familyOf, type FamilySpec, type ModelDtype } from './family.ts';
import { parsePreprocessConfig, outputSize, type PreprocessConfig } from './preprocess.ts';

export const REQUIRED_FILES = [
  'config.json',
  'preprocessor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'onnx/vision_model.onnx',
  'onnx/text_model.onnx',
] as const;

/** The files a folder needs with the ONNX weights of `dtype` (fp32: the plain names). */
export function requiredFiles(dtype: ModelDtype = 'fp32'): string[] {
  const suffix = DTYPE_SUFFIX[dtype];
  return REQUIRED_FILES.map((f) => f.replace(/_model\.onnx$/, `_model${suffix}.onnx`));
}

export interface OpenFolderOptions {
  /** Which ONNX weights to run (default fp32): `_fp16`, `_quantized` (q8), ... files beside the fp32 ones. */
  dtype?: ModelDtype;
}

export interface ClipFolder {
  /** Absolute path of the folder. */
  dir: string;
  /** A name for the model: config `_name_or_path`, else the folder's name. Recorded in checkpoints and reports. */
  id: string;
  /** The model family (config model_type) and what follows from it. */
  spec: FamilySpec;
  dtype: ModelDtype;
  visionModelPath: string;
  textModelPath: string;
  preprocess: PreprocessConfig;
  /** Input image size [H, W] after preprocessing. */
  imageSize: { height: number; width: number };
  /** Vision transformer width C (patch-token size), patch size and projected embedding size E. */
  visionHidden: number;
  patchSize: number;
  projectionDim: number;
  /** Longest token sequence the text model takes. */
  textMaxLength: number;
  tokenizerJSON: unknown;
  tokenizerConfig: Record<string, unknown>;
  configRaw: Record<string, unknown>;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ClipDecoderError('MODEL_NOT_FOUND', `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? e})`, path, { cause: e });
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new ClipDecoderError('MODEL_INVALID', `${path}: not valid JSON (${(e as Error).message})`, path, { cause: e });
  }
}

function positiveInt(obj: Record<string, unknown> | undefined, key: string, fallback: number, file: string, where: string): number {
  const v = obj?.[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ClipDecoderError('MODEL_INVALID', `${file}: ${where}${key} must be a positive integer, got ${JSON.stringify(v)}`, file);
  }
  return v;
}

/** Checks a local folder has every file of the layout and that its configs agree with one another. */
export async function openClipFolder(path: string, options: OpenFolderOptions = {}): Promise<ClipFolder> {
  const dir = resolve(path);
  const dtype = options.dtype ?? 'fp32';
  const required = requiredFiles(dtype);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ClipDecoderError('MODEL_NOT_FOUND', `${dir}: no such model folder (expected a CLIP folder with ${required.join(', ')})`, dir);
  }
  const configPath = join(dir, 'config.json');
  // The family first, so a folder of another kind is named as such rather than as one missing a file.
  const config = existsSync(configPath) ? await readJson(configPath) : undefined;
  const spec = config ? familyOf(config, configPath) : undefined;
  for (const f of required) {
    if (!existsSync(join(dir, f))) {
      const variant =
        dtype !== 'fp32' && f.endsWith('.onnx')
          ? ` (--dtype ${dtype} reads the ${DTYPE_SUFFIX[dtype]} variant; the folder may not carry it)`
          : '';
      throw new ClipDecoderError(
        'MODEL_NOT_FOUND',
        `${join(dir, f)}: missing${variant} (a model folder needs ${required.join(', ')})`,
        join(dir, f),
      );
    }
  }
  const pre = join(dir, 'preprocessor_config.json');
  const preprocess = parsePreprocessConfig(await readJson(pre), pre, { centerCrop: spec!.defaults.centerCrop });
  const tokenizerJSON = await readJson(join(dir, 'tokenizer.json'));
  const tokenizerConfig = await readJson(join(dir, 'tokenizer_config.json'));

  // Hugging Face CLIPConfig / SiglipConfig defaults apply where a key is absent.
  const d = spec!.defaults;
  const vision = config!.vision_config as Record<string, unknown> | undefined;
  const text = config!.text_config as Record<string, unknown> | undefined;
  const imageSizeCfg = positiveInt(vision, 'image_size', 224, configPath, 'vision_config.');
  const patchSize = positiveInt(vision, 'patch_size', d.patchSize, configPath, 'vision_config.');
  const visionHidden = positiveInt(vision, 'hidden_size', d.hidden, configPath, 'vision_config.');
  // SigLIP's embedding is the vision MAP head's output (width C) and the text head's (projection_size).
  const projectionDim = spec!.family === 'siglip' ? visionHidden : positiveInt(config, 'projection_dim', 512, configPath, '');
  if (spec!.family === 'siglip') {
    const textProj = positiveInt(
      text,
      'projection_size',
      positiveInt(text, 'hidden_size', d.hidden, configPath, 'text_config.'),
      configPath,
      'text_config.',
    );
    if (textProj !== projectionDim) {
      throw new ClipDecoderError(
        'MODEL_INVALID',
        `${configPath}: text_config.projection_size ${textProj} differs from vision_config.hidden_size ${projectionDim}: the two embeddings cannot be compared`,
        configPath,
      );
    }
  }
  const textMaxLength = positiveInt(text, 'max_position_embeddings', d.textMaxLength, configPath, 'text_config.');
  checkVocabulary(tokenizerJSON, text, join(dir, 'tokenizer.json'), configPath);
  const imageSize = outputSize(preprocess);
  if (imageSize.height !== imageSizeCfg || imageSize.width !== imageSizeCfg) {
    throw new ClipDecoderError(
      'MODEL_INVALID',
      `${pre}: produces ${imageSize.height}×${imageSize.width} images but ${configPath} says vision_config.image_size = ${imageSizeCfg}`,
      pre,
    );
  }
  if (imageSizeCfg % patchSize !== 0) {
    throw new ClipDecoderError(
      'MODEL_INVALID',
      `${configPath}: image_size ${imageSizeCfg} is not a multiple of patch_size ${patchSize}`,
      configPath,
    );
  }
  const id = typeof config!._name_or_path === 'string' && config!._name_or_path ? config!._name_or_path : basename(dir);
  return {
    dir,
    id,
    spec: spec!,
    dtype,
    visionModelPath: join(dir, required[4]!),
    textModelPath: join(dir, required[5]!),
    preprocess,
    imageSize,
    visionHidden,
    patchSize,
    projectionDim,
    textMaxLength,
    tokenizerJSON,
    tokenizerConfig,
    configRaw: config!,
  };
}

/**
 * Refuses a tokenizer whose ids fall outside the text model's embedding table (text_config.vocab_size): such a
 * pair would run, but look up the wrong rows or fail inside ONNX Runtime on the first long word.
 */
function checkVocabulary(
  tokenizer: Record<string, unknown>,
  text: Record<string, unknown> | undefined,
  tokFile: string,
  configPath: string,
): void {
  const vocabSize = text?.vocab_size;
  if (typeof vocabSize !== 'number') return;
  const model = tokenizer.model as { vocab?: unknown } | undefined;
  let maxId = -1;
  const vocab = model?.vocab;
  if (Array.isArray(vocab))
    maxId = vocab.length - 1; // Unigram: [piece, score] rows, id = row
  else if (vocab && typeof vocab === 'object') for (const id of Object.values(vocab)) if (typeof id === 'number' && id > maxId) maxId = id; // BPE / WordPiece: piece → id
  for (const t of (tokenizer.added_tokens as { id?: unknown }[] | undefined) ?? [])
    if (typeof t.id === 'number' && t.id > maxId) maxId = t.id;
  if (maxId >= vocabSize) {
    throw new ClipDecoderError(
      'MODEL_INVALID',
      `${tokFile}: has token ids up to ${maxId} but ${configPath} says text_config.vocab_size = ${vocabSize}: the tokenizer does not belong to this text model`,
      tokFile,
    );
  }
}
