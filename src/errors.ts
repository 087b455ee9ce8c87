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
  | 'BAD_PARAMETER' // a flag or parameter with a bad value: not a number in its range, not one of its choices
  | 'NO_LABELS' // a label list is empty
  | 'TOO_MANY_LABELS' // a label list is longer than its limit
  | 'LABEL_TOO_LONG' // a label is longer than its limit
  | 'DUPLICATE_LABEL' // a label appears twice in one list
  | 'FILE_NOT_REGULAR' // an input path is a FIFO, device, socket or folder where a file was wanted
  | 'FILE_TOO_LARGE' // an input file exceeds the byte limit
  | 'OUTPUT_UNWRITABLE' // an output folder or file cannot be created or written
  | 'CHECKPOINT_INVALID' // a head checkpoint fails validation
  | 'HEAD_MODEL_MISMATCH' // a head trained on another CLIP's features (token width or text-embedding width differ)
  | 'CALIBRATION_INVALID' // a calibration file (calibration.json) is malformed: the message names the field
  | 'CALIBRATION_MISMATCH' // a calibration fitted for another CLIP model or head than the one loaded
  | 'TRAINING_DIVERGED' // the training loss became NaN or infinite
  | 'WORKER_FAILED' // a data-parallel training worker threw or died (the message names it and the cause)
  | 'CHECKPOINT_CORRUPT' // a checkpoint tensor's bytes differ from the SHA-256 digest recorded at save time
  | 'RESUME_MISMATCH' // --resume with options that differ from the run being resumed
  | 'DATASET_INVALID' // a dataset file fails validation
  | 'CACHE_MISMATCH' // a feature cache from another model or dataset
  | 'CACHE_CORRUPT' // a cached record's bytes differ from its index digest, or hold non-finite values
  | 'EXPORT_UNSUPPORTED' // a head or model that export-onnx / export-web cannot express (the message says what)
  | 'RESULTS_MISMATCH' // a results file or embeddings folder (tag --out, embed --out) made with another model, head or label set
  | 'SIDECAR_INVALID' // an existing XMP sidecar is not valid XMP: left untouched
  | 'SHARD_MISMATCH' // shards to merge come from different runs (model, preprocessing, dataset, options), or share or lack items
  | 'SHARD_INCOMPLETE' // a shard to merge is missing, or was killed or failed midway (rerun its command)
  // HTTP requests (src/serve): each names the field, parameter or limit at fault.
  | 'BAD_REQUEST' // malformed multipart, a repeated parameter or field
  | 'NOT_FOUND' // no such route
  | 'BAD_FIELD' // an unexpected multipart file field
  | 'NO_IMAGE' // a request without an image
  | 'TOO_LARGE' // a body, file, field or part count over its limit (the message names it)
  | 'HEADERS_TOO_LARGE' // the URL and headers exceed Node's 16 KB
  | 'IMAGE_TOO_COMPLEX' // an SVG whose rendering ran past --max-render-ms
  | 'UNSUPPORTED_MEDIA_TYPE' // neither multipart nor image bytes
  | 'BODY_TIMEOUT' // the request (headers + body) did not arrive within --body-timeout
  | 'TIMEOUT' // the request was not answered within --deadline (waiting or working)
  | 'OVERLOADED' // more requests than the concurrency gate can queue
  | 'INTERNAL'; // a bug: logged with its cause, answered without details

/**
 * The one code → HTTP status table. The server answers every error with the status of its code; a code added
 * above without a status here does not compile.
 */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  MODEL_NOT_FOUND: 500,
  MODEL_INVALID: 500,
  MODEL_UNSUPPORTED: 500,
  MODEL_OUTPUT_MISSING: 500,
  HUB_OFFLINE: 500,
  IMAGE_INVALID: 400,
  IMAGE_TOO_LARGE: 413,
  INPUT_INVALID: 400,
  FILE_NOT_REGULAR: 400,
  FILE_TOO_LARGE: 413,
  OUTPUT_UNWRITABLE: 500,
  CHECKPOINT_INVALID: 500,
  HEAD_MODEL_MISMATCH: 500,
  CALIBRATION_INVALID: 500,
  CALIBRATION_MISMATCH: 500,
  TRAINING_DIVERGED: 500,
  WORKER_FAILED: 500,
  CHECKPOINT_CORRUPT: 500,
  RESUME_MISMATCH: 400,
  DATASET_INVALID: 500,
  CACHE_MISMATCH: 500,
  CACHE_CORRUPT: 500,
  EXPORT_UNSUPPORTED: 500,
  RESULTS_MISMATCH: 409,
  SIDECAR_INVALID: 500,
  SHARD_MISMATCH: 409,
  SHARD_INCOMPLETE: 409,
  BAD_REQUEST: 400,
  NOT_FOUND: 404,
  BAD_PARAMETER: 400,
  BAD_FIELD: 400,
  NO_IMAGE: 400,
  NO_LABELS: 400,
  TOO_MANY_LABELS: 400,
  LABEL_TOO_LONG: 400,
  DUPLICATE_LABEL: 400,
  TOO_LARGE: 413,
  HEADERS_TOO_LARGE: 431,
  IMAGE_TOO_COMPLEX: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  BODY_TIMEOUT: 408,
  TIMEOUT: 503,
  OVERLOADED: 503,
  INTERNAL: 500,
};

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
