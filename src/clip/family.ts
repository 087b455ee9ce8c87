// The model families a folder may hold, told apart by config.json's model_type, and what differs between them:
// the tokenizer's padding, the vision output's [CLS] token, the ONNX output names, the preprocessing defaults
// and how a plain (head-less) score becomes a probability.
import { ClipDecoderError } from '../errors.ts';

export type ModelFamily = 'clip' | 'siglip';

export interface FamilySpec {
  family: ModelFamily;
  /** The vision transformer's output starts with a [CLS] token (CLIP) or holds only patches (SigLIP). */
  hasCls: boolean;
  /** ONNX output names of the projected/pooled embeddings. */
  imageEmbedsOutput: string;
  textEmbedsOutput: string;
  /** Texts padded to the longest in the batch (CLIP, which pools at the EOS token) or to the model's length. */
  padding: 'longest' | 'max_length';
  /** Hugging Face config defaults where a key is absent. */
  defaults: { patchSize: number; hidden: number; textMaxLength: number; centerCrop: boolean };
}

const SPECS: Record<ModelFamily, FamilySpec> = {
  clip: {
    family: 'clip',
    hasCls: true,
    imageEmbedsOutput: 'image_embeds',
    textEmbedsOutput: 'text_embeds',
    padding: 'longest',
    defaults: { patchSize: 32, hidden: 768, textMaxLength: 77, centerCrop: true },
  },
  siglip: {
    family: 'siglip',
    hasCls: false,
    // transformers.js's SigLIP towers: the MAP head's output (vision) and head(last token) (text).
    imageEmbedsOutput: 'pooler_output',
    textEmbedsOutput: 'pooler_output',
    padding: 'max_length',
    defaults: { patchSize: 16, hidden: 768, textMaxLength: 64, centerCrop: false },
  },
};

/** model_type values accepted, as config.json spells them. */
export const SUPPORTED_MODEL_TYPES = ['clip', 'siglip'] as const;

/** The family of a config.json (no model_type: CLIP, as old CLIP exports omit it). */
export function familyOf(config: Record<string, unknown>, file: string): FamilySpec {
  const type = config.model_type ?? 'clip';
  if (type === 'clip' || type === 'siglip') return SPECS[type];
  const why =
    type === 'siglip2'
      ? ' (SigLIP 2 NaFlex checkpoints take variable-size patch sequences with pixel_attention_mask and spatial_shapes; the fixed-resolution SigLIP 2 checkpoints, model_type "siglip", are supported)'
      : '';
  throw new ClipDecoderError(
    'MODEL_UNSUPPORTED',
    `${file}: model_type ${JSON.stringify(type)} is not supported${why}; supported: ${SUPPORTED_MODEL_TYPES.join(', ')}`,
    file,
  );
}

/** ONNX weight variants of transformers.js folders: `onnx/<tower>_model<suffix>.onnx`. */
export const DTYPE_SUFFIX = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  int8: '_int8',
  uint8: '_uint8',
  q4: '_q4',
  q4f16: '_q4f16',
  bnb4: '_bnb4',
} as const;
export type ModelDtype = keyof typeof DTYPE_SUFFIX;

export function parseDtype(value: string, flag = '--dtype'): ModelDtype {
  if (value === 'quantized') return 'q8';
  if (Object.hasOwn(DTYPE_SUFFIX, value)) return value as ModelDtype;
  throw new ClipDecoderError(
    'INPUT_INVALID',
    `${flag} must be one of ${Object.keys(DTYPE_SUFFIX).join(', ')} (or "quantized" for q8), got "${value}"`,
    flag,
  );
}
