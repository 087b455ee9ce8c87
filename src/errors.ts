/**
 * Every error the library raises on purpose is a ClipDecoderError with a stable `code` and a message that
 * names the file, flag or label at fault and, where possible, says what to do.
 */
export type ErrorCode =
  | 'MODEL_NOT_FOUND' // a model folder or file is missing
  | 'MODEL_INVALID' // a config or ONNX file is inconsistent or unreadable
  | 'MODEL_UNSUPPORTED' // a model folder of a family (model_type) this library does not run
  | 'MODEL_OUTPUT_MISSING' // an ONNX session lacks an output we look up by name
  | 'HUB_OFFLINE' // a hub id was given but no network / cache
  | 'IMAGE_INVALID' // an image file is corrupt, empty, truncated or not an image
  | 'IMAGE_TOO_LARGE' // an image exceeds the pixel limit
  | 'INPUT_INVALID' // bad arguments: empty label list, NaN in features, shape mismatch
  | 'CHECKPOINT_INVALID' // a head checkpoint fails validation
  | 'DATASET_INVALID' // a dataset file fails validation
  | 'CACHE_MISMATCH'; // a feature cache from another model or dataset

export class ClipDecoderError extends Error {
  readonly code: ErrorCode;
  /** The file, flag or label at fault, when there is one. */
  readonly subject?: string;
  constructor(code: ErrorCode, message: string, subject?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClipDecoderError';
    this.code = code;
    this.subject = subject;
  }
}

export function isClipDecoderError(e: unknown): e is ClipDecoderError {
  return e instanceof ClipDecoderError;
}
