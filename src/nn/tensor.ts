// Buffers of the engine: flat, row-major Float32Arrays. Layers take them with their dimensions spelled out
// (llm.c style); parameters carry their shape (param.ts). `Buf` also admits Float64Array so the same layer
// code can be gradient-checked in double precision.
import { ClipDecoderError } from '../errors.ts';

export type Buf = Float32Array | Float64Array;

/** A new zeroed buffer of the same element type as `a`. */
export function like(a: Buf, n: number): Buf {
  return a instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/**
 * Throws INPUT_INVALID naming `what` unless every value is finite. Used at the library's edges (features,
 * embeddings), never in the hot loop.
 */
export function assertFinite(data: ArrayLike<number>, what: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) {
      throw new ClipDecoderError(
        'INPUT_INVALID',
        `${what} contains ${Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'} at index ${i}; recompute or drop that input`,
        what,
      );
    }
  }
}
