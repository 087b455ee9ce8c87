// Every limit the server enforces, with its default and the `serve` flag that changes it: one place, so the
// server, the CLI's --help and the README table agree.
import { DEFAULT_PIXEL_LIMIT } from '../clip/image-limits.ts';

export interface ServeLimits {
  /** Largest request body / image in bytes (--max-body). */
  maxBodyBytes: number;
  /** Request bodies held in memory at once, in bytes, across all requests (--max-buffered). */
  maxBufferedBytes: number;
  /** Most pixels an image may decode to (--max-pixels). */
  maxPixels: number;
  /** Most labels per request (--max-labels). */
  maxLabels: number;
  /** Longest label in characters (Unicode code points) (--max-label-length). */
  maxLabelLength: number;
  /** Requests tagged at once (--concurrency). */
  maxConcurrent: number;
  /** Requests waiting beyond those, bodies unread; more get 503 (--queue). */
  maxQueue: number;
  /** Time from a request's arrival to its answer, in ms; past it, 503 TIMEOUT (--deadline). */
  deadlineMs: number;
  /** Time to receive a request's headers and body, in ms; past it, 408 and the connection closed (--body-timeout). */
  bodyTimeoutMs: number;
  /** Time to render one SVG, in ms; past it the renderer is killed and the request gets 413 (--max-render-ms). */
  maxRenderMs: number;
  /** Open connections; more are refused at once (--max-connections). */
  maxConnections: number;
}

export const DEFAULT_LIMITS: Readonly<ServeLimits> = {
  maxBodyBytes: 20 * 1024 * 1024,
  maxBufferedBytes: 4 * 20 * 1024 * 1024,
  maxPixels: DEFAULT_PIXEL_LIMIT,
  maxLabels: 1000,
  maxLabelLength: 200,
  maxConcurrent: 2,
  maxQueue: 32,
  deadlineMs: 30_000,
  bodyTimeoutMs: 10_000,
  maxRenderMs: 2_000,
  maxConnections: 512,
};

/** Multipart fields other than `labels` carry a number or a flag. */
export const SMALL_FIELD_BYTES = 64;
/** Fields a request may send: labels, top, threshold, attention. */
export const MAX_FIELDS = 4;

/**
 * The `labels` field's byte limit, sized so that any request within the label limits fits: a code point is at
 * most 4 UTF-8 bytes, plus a comma and some spaces per label.
 */
export function labelsFieldBytes(limits: Pick<ServeLimits, 'maxLabels' | 'maxLabelLength'>): number {
  return limits.maxLabels * (4 * limits.maxLabelLength + 16);
}

/** Limits with defaults filled in; when --max-buffered is not given it scales with concurrency and body size. */
export function resolveLimits(options: Partial<ServeLimits> = {}): ServeLimits {
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<ServeLimits>;
  const merged = { ...DEFAULT_LIMITS, ...given };
  if (given.maxBufferedBytes === undefined) merged.maxBufferedBytes = 2 * merged.maxConcurrent * merged.maxBodyBytes;
  // A request must be able to fit: the buffer budget holds at least one largest body (multipart framing included).
  merged.maxBufferedBytes = Math.max(merged.maxBufferedBytes, merged.maxBodyBytes + labelsFieldBytes(merged) + 64 * 1024);
  return merged;
}
