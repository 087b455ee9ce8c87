// A CLIP model folder in the Hugging Face / transformers.js layout, found on disk (or in transformers.js's cache
// for a hub id), its files checked and its configs parsed before any ONNX session is created.
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { parsePreprocessConfig, outputSize, type PreprocessConfig } from './preprocess.ts';

export const REQUIRED_FILES = [
  'config.json',
  'preprocessor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'onnx/vision_model.onnx',
  'onnx/text_model.onnx',
] as const;

export interface ClipFolder {
  /** Absolute path of the folder. */
  dir: string;
  /** A name for the model: config `_name_or_path`, else the folder's name. Recorded in checkpoints and reports. */
  id: string;
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
export async function openClipFolder(path: string): Promise<ClipFolder> {
  const dir = resolve(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ClipDecoderError('MODEL_NOT_FOUND', `${dir}: no such model folder (expected a CLIP folder with ${REQUIRED_FILES.join(', ')})`, dir);
  }
  for (const f of REQUIRED_FILES) {
    if (!existsSync(join(dir, f))) {
      throw new ClipDecoderError('MODEL_NOT_FOUND', `${join(dir, f)}: missing (a CLIP model folder needs ${REQUIRED_FILES.join(', ')})`, join(dir, f));
    }
  }
  const configPath = join(dir, 'config.json');
  const config = await readJson(configPath);
  const pre = join(dir, 'preprocessor_config.json');
  const preprocess = parsePreprocessConfig(await readJson(pre), pre);
  const tokenizerJSON = await readJson(join(dir, 'tokenizer.json'));
  const tokenizerConfig = await readJson(join(dir, 'tokenizer_config.json'));

  // Hugging Face CLIPConfig defaults apply where a key is absent.
  const vision = config.vision_config as Record<string, unknown> | undefined;
  const text = config.text_config as Record<string, unknown> | undefined;
  const imageSizeCfg = positiveInt(vision, 'image_size', 224, configPath, 'vision_config.');
  const patchSize = positiveInt(vision, 'patch_size', 32, configPath, 'vision_config.');
  const visionHidden = positiveInt(vision, 'hidden_size', 768, configPath, 'vision_config.');
  const projectionDim = positiveInt(config, 'projection_dim', 512, configPath, '');
  const textMaxLength = positiveInt(text, 'max_position_embeddings', 77, configPath, 'text_config.');
  const imageSize = outputSize(preprocess);
  if (imageSize.height !== imageSizeCfg || imageSize.width !== imageSizeCfg) {
    throw new ClipDecoderError(
      'MODEL_INVALID',
      `${pre}: produces ${imageSize.height}×${imageSize.width} images but ${configPath} says vision_config.image_size = ${imageSizeCfg}`,
      pre,
    );
  }
  if (imageSizeCfg % patchSize !== 0) {
    throw new ClipDecoderError('MODEL_INVALID', `${configPath}: image_size ${imageSizeCfg} is not a multiple of patch_size ${patchSize}`, configPath);
  }
  const id = typeof config._name_or_path === 'string' && config._name_or_path ? config._name_or_path : basename(dir);
  return {
    dir,
    id,
    visionModelPath: join(dir, 'onnx/vision_model.onnx'),
    textModelPath: join(dir, 'onnx/text_model.onnx'),
    preprocess,
    imageSize,
    visionHidden,
    patchSize,
    projectionDim,
    textMaxLength,
    tokenizerJSON,
    tokenizerConfig,
    configRaw: config,
  };
}
