// One closeness assertion for the numeric tests: on failure it says how many elements are off and which one
// is worst (index, both values, the difference and the bound there).
import assert from 'node:assert/strict';

export interface CloseOptions {
  /** Absolute tolerance (default 0). */
  atol?: number;
  /** Relative tolerance, against |want| of each element (default 0). */
  rtol?: number;
  /** Names the tensor in the message. */
  what?: string;
}

/** Asserts |got[i] − want[i]| ≤ atol + rtol·|want[i]| for every i. */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, o: CloseOptions = {}): void {
  const { atol = 0, rtol = 0, what = 'values' } = o;
  assert.equal(got.length, want.length, `${what}: length ${got.length}, ${want.length} expected`);
  let worst = -1,
    worstExcess = 0,
    bad = 0;
  for (let i = 0; i < want.length; i++) {
    const diff = Math.abs(got[i] - want[i]),
      bound = atol + rtol * Math.abs(want[i]);
    if (!(diff <= bound)) {
      // NaN fails too
      bad++;
      const excess = Number.isNaN(diff) ? Infinity : diff - bound;
      if (worst < 0 || excess > worstExcess) [worst, worstExcess] = [i, excess];
    }
  }
  if (bad === 0) return;
  const i = worst,
    diff = Math.abs(got[i] - want[i]);
  assert.fail(
    `${what}: ${bad} of ${want.length} differ; worst at [${i}]: ${got[i]} vs ${want[i]} (|diff| ${diff.toExponential(2)}` +
      ` > ${(atol + rtol * Math.abs(want[i])).toExponential(2)} = atol ${atol} + rtol ${rtol}·|want|)`,
  );
}

/** max |got − want| over the elements (the lengths must agree). */
export function maxAbsDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length, `length ${got.length}, ${want.length} expected`);
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i]! - want[i]!));
  return m;
}

/** max |got − want| relative to max |want|: the error at the tensor's own scale. */
export function scaledMaxDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  return maxAbsDiff(got, want) / Math.max(scale, 1e-30);
}
