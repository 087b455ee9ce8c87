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
  | 'INPUT_INVALID' // bad arguments: NaN in features, shape mismatch
  | 'BAD_PARAMETER' // a numeric flag or parameter is not a plain decimal number in its range
  | 'NO_LABELS' // a label list is empty
  | 'TOO_MANY_LABELS' // a label list is longer than its limit
  | 'LABEL_TOO_LONG' // a label is longer than its limit
  | 'DUPLICATE_LABEL' // a label appears twice in one list
  | 'FILE_NOT_REGULAR' // an input path is a FIFO, device, socket or folder where a file was wanted
  | 'FILE_TOO_LARGE' // an input file exceeds the byte limit
  | 'OUTPUT_UNWRITABLE' // an output folder or file cannot be created or written
  | 'CHECKPOINT_INVALID' // a head checkpoint fails validation
  | 'CHECKPOINT_CORRUPT' // a checkpoint tensor's bytes differ from the SHA-256 digest recorded at save time
  | 'RESUME_MISMATCH' // --resume with options that differ from the run being resumed
  | 'DATASET_INVALID' // a dataset file fails validation
  | 'CACHE_MISMATCH' // a feature cache from another model or dataset
  | 'CACHE_CORRUPT'; // a cached record's bytes differ from its index digest, or hold non-finite values

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
