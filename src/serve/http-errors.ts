// Every error a request can meet becomes a ClipDecoderError whose code picks its status from HTTP_STATUS
// (src/errors.ts). Errors from fastify and @fastify/multipart are translated here, with messages that name the
// real limit and its flag instead of the generic body limit.
import { ClipDecoderError } from '../errors.ts';
import { MAX_FIELDS, labelsFieldBytes, type ServeLimits } from './limits.ts';

/** Most bytes a request body may declare: a raw image, or a multipart image + labels field + framing. */
export function maxRequestBytes(limits: ServeLimits): number {
  return limits.maxBodyBytes + labelsFieldBytes(limits) + 64 * 1024;
}

export function toClipDecoderError(err: unknown, limits: ServeLimits): ClipDecoderError {
  if (err instanceof ClipDecoderError) return err;
  const e = err as Error & { code?: string; statusCode?: number };
  const cause = { cause: err };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ClipDecoderError(
        'TOO_LARGE',
        `the request body is larger than ${limits.maxBodyBytes} bytes (--max-body)`,
        '--max-body',
        cause,
      );
    case 'FST_REQ_FILE_TOO_LARGE':
      return new ClipDecoderError('TOO_LARGE', `the image is larger than ${limits.maxBodyBytes} bytes (--max-body)`, '--max-body', cause);
    case 'FST_FILES_LIMIT':
      return new ClipDecoderError('TOO_LARGE', 'more than 1 file: send one "image" file per request', 'image', cause);
    case 'FST_FIELDS_LIMIT':
      return new ClipDecoderError(
        'TOO_LARGE',
        `more than ${MAX_FIELDS} fields: send at most labels, top, threshold and attention`,
        'fields',
        cause,
      );
    case 'FST_PARTS_LIMIT':
      return new ClipDecoderError(
        'TOO_LARGE',
        `more than ${MAX_FIELDS + 1} parts: send one "image" and at most labels, top, threshold and attention`,
        'parts',
        cause,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new ClipDecoderError(
        'UNSUPPORTED_MEDIA_TYPE',
        'send multipart/form-data with "image" and "labels", or raw image bytes with ?labels=a,b,c',
        undefined,
        cause,
      );
    case 'FST_MP_PREMATURE_CLOSE':
      return new ClipDecoderError('BAD_REQUEST', 'the request closed before its multipart body was complete', undefined, cause);
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new ClipDecoderError('BAD_REQUEST', e.message, undefined, cause);
  }
  return new ClipDecoderError('INTERNAL', 'internal error', undefined, cause);
}

/** busboy's parse errors carry no code: while reading a multipart body, anything uncoded is the client's. */
export function multipartError(err: unknown): unknown {
  const e = err as Error & { code?: string };
  if (err instanceof ClipDecoderError || e.code) return err;
  return new ClipDecoderError('BAD_REQUEST', `malformed multipart body (${e.message ?? String(err)})`, undefined, { cause: err });
}
