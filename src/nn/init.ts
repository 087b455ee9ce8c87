// PyTorch's initialisers, drawing from our seeded Rng (the distributions match; the numbers cannot).
import type { Rng } from './rng.ts';

/** torch.nn.init._calculate_fan_in_and_fan_out: fan_in = shape[1]·receptive, fan_out = shape[0]·receptive. */
export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length < 2) throw new Error('fan in/out need a tensor of rank ≥ 2');
  let receptive = 1;
  for (let i = 2; i < shape.length; i++) receptive *= shape[i];
  return { fanIn: shape[1] * receptive, fanOut: shape[0] * receptive };
}

export function uniform(a: Float32Array, lo: number, hi: number, rng: Rng): void {
  for (let i = 0; i < a.length; i++) a[i] = rng.range(lo, hi);
}

/**
 * nn.Linear's default: weight kaiming_uniform_(a=√5), i.e. U(±1/sqrt(fan_in)); bias U(±1/sqrt(fan_in)).
 */
export function linearDefault(w: Float32Array, b: Float32Array | null, shape: readonly number[], rng: Rng): void {
  const bound = 1 / Math.sqrt(fans(shape).fanIn);
  uniform(w, -bound, bound, rng);
  if (b) uniform(b, -bound, bound, rng);
}

/** xavier_uniform_: U(±sqrt(6 / (fan_in + fan_out))). */
export function xavierUniform(w: Float32Array, shape: readonly number[], rng: Rng): void {
  const { fanIn, fanOut } = fans(shape);
  const bound = Math.sqrt(6 / (fanIn + fanOut));
  uniform(w, -bound, bound, rng);
}

/** xavier_normal_: N(0, 2 / (fan_in + fan_out)). */
export function xavierNormal(w: Float32Array, shape: readonly number[], rng: Rng): void {
  const { fanIn, fanOut } = fans(shape);
  const std = Math.sqrt(2 / (fanIn + fanOut));
  for (let i = 0; i < w.length; i++) w[i] = std * rng.normal();
}

export function normal(w: Float32Array, rng: Rng, std = 1): void {
  for (let i = 0; i < w.length; i++) w[i] = std * rng.normal();
}
