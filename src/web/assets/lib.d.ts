// Types of lib.js (plain JS: the browser loads it as it is), for the Node tests that hold it against the library.
import type { PreprocessConfig } from '../../clip/preprocess.ts';

type Bytes = Uint8Array | Uint8ClampedArray;
export function resizeRgb(src: Bytes, width: number, height: number, outWidth: number, outHeight: number, kernel?: string): Bytes;
export function resizedSize(width: number, height: number, pre: PreprocessConfig): { width: number; height: number };
export function preprocessRgb(rgb: Bytes, width: number, height: number, pre: PreprocessConfig): Float32Array;
export function rgbaToRgb(rgba: Bytes): Uint8ClampedArray;
export function tokenBatch(
  rows: number[][],
  o: { maxLength: number; padding: 'longest' | 'max_length'; padId: number; padLeft?: boolean; eosId?: number },
): { ids: BigInt64Array; mask: BigInt64Array; length: number };
export function l2normalizeRows(x: Float32Array, dim: number): Float32Array;
export function ensemble(perTemplate: Float32Array[], dim: number, normalize: boolean): Float32Array;
export interface WebStreamWeights {
  global: number;
  local: number;
  bias: number;
}
export function fusedProbabilities(
  logits: ArrayLike<number>,
  imageEmbed: ArrayLike<number>,
  queries: ArrayLike<number>,
  labels: readonly string[],
  dim: number,
  scoring: { weights: { trained: WebStreamWeights; novel: WebStreamWeights } | null; trainedLabels: string[] },
): Float32Array;
