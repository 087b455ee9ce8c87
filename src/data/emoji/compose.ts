// The EmojiScenes composer: a scene is 1-4 emoji drawings at random positions and scales (small overlaps
// allowed) on a varied background (solid, gradient, noise, stripes, checks, dots), so that no model can lean on
// white space or a centred object. A scene is planned as a resolution-free spec (boxes and texture periods as
// fractions of the side, a seed for the noise), then drawn at any size: the benchmark and the pretraining
// scenes use the same code, and a later tool may redraw a spec at its own resolution.
import { Rng } from '../../nn/rng.ts';
import { renderSvgRgba } from './render.ts';
import type { SquareSvg } from './sources.ts';

export type Rgb = [number, number, number];

export type Background =
  | { kind: 'solid'; colors: [Rgb] }
  | { kind: 'gradient'; colors: [Rgb, Rgb]; angle: number; radial: boolean }
  | { kind: 'noise'; colors: [Rgb, Rgb]; cells: number; seed: number; grain: number }
  | { kind: 'stripes'; colors: [Rgb, Rgb]; angle: number; period: number }
  | { kind: 'checks'; colors: [Rgb, Rgb]; period: number }
  | { kind: 'dots'; colors: [Rgb, Rgb]; period: number; radius: number };

export const BACKGROUND_KINDS = ['solid', 'gradient', 'noise', 'stripes', 'checks', 'dots'] as const;

/** One drawing in a scene; the box is a square [x, y, side] in fractions of the scene side. */
export interface SceneMember {
  key: string;
  style: string;
  box: [number, number, number];
}

export interface SceneSpec {
  background: Background;
  members: SceneMember[];
}

export interface LayoutOptions {
  /** Share of scenes with 1, 2, 3, 4 objects (normalised). */
  objectWeights: readonly number[];
  /** Largest allowed overlap of two boxes, as a share of the smaller box. */
  maxOverlap: number;
}

/**
 * Object sides (fractions of the scene side) by object count. The smallest side of a 4-object scene, 0.34, is
 * about 2 × 2 patches of a 6 × 6 grid (and more on finer grids): every object is large enough to be attended to.
 */
const SIDE_RANGE: Record<number, [number, number]> = { 1: [0.5, 0.85], 2: [0.4, 0.6], 3: [0.36, 0.5], 4: [0.34, 0.44] };
export const MIN_OBJECT_SIDE = SIDE_RANGE[4]![0];

function hslToRgb(h: number, s: number, l: number): Rgb {
  const k = (n: number) => (n + h * 12) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1));
  return [Math.round(255 * f(0)), Math.round(255 * f(8)), Math.round(255 * f(4))];
}

function randomColor(rng: Rng): Rgb {
  return hslToRgb(rng.uniform(), rng.range(0, 0.85), rng.range(0.12, 0.95));
}

export function randomBackground(rng: Rng): Background {
  const kind = BACKGROUND_KINDS[rng.int(BACKGROUND_KINDS.length)]!;
  const a = randomColor(rng);
  const b = randomColor(rng);
  switch (kind) {
    case 'solid':
      return { kind, colors: [a] };
    case 'gradient':
      return { kind, colors: [a, b], angle: rng.range(0, Math.PI * 2), radial: rng.uniform() < 0.3 };
    case 'noise':
      return { kind, colors: [a, b], cells: 2 + rng.int(10), seed: rng.nextU32(), grain: rng.range(0, 0.25) };
    case 'stripes':
      return { kind, colors: [a, b], angle: rng.range(0, Math.PI), period: rng.range(0.04, 0.2) };
    case 'checks':
      return { kind, colors: [a, b], period: rng.range(0.06, 0.25) };
    case 'dots':
      return { kind, colors: [a, b], period: rng.range(0.06, 0.2), radius: rng.range(0.15, 0.4) };
  }
}

/** How much two square boxes overlap, as a share of the smaller one. */
function overlap(p: [number, number, number], q: [number, number, number]): number {
  const w = Math.min(p[0] + p[2], q[0] + q[2]) - Math.max(p[0], q[0]);
  const h = Math.min(p[1] + p[2], q[1] + q[2]) - Math.max(p[1], q[1]);
  if (w <= 0 || h <= 0) return 0;
  return (w * h) / Math.min(p[2] * p[2], q[2] * q[2]);
}

/** Draws how many objects a scene holds (1..4) from the weights. */
export function drawObjectCount(rng: Rng, weights: readonly number[]): number {
  const total = weights.reduce((a, b) => a + b, 0);
  let u = rng.uniform() * total;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i]!;
    if (u < 0) return i + 1;
  }
  return weights.length;
}

/**
 * Boxes for n objects: each side drawn in its range, each position uniform inside the canvas, rejected while it
 * overlaps a placed box by more than `maxOverlap`; after many rejections all sides shrink a little and the
 * placement restarts (never below the range's minimum, where four boxes always fit).
 */
export function placeBoxes(n: number, rng: Rng, maxOverlap: number): [number, number, number][] {
  const [lo, hi] = SIDE_RANGE[n]!;
  let shrink = 1;
  for (;;) {
    const boxes: [number, number, number][] = [];
    for (let i = 0; i < n; i++) {
      const side = Math.max(lo, rng.range(lo, hi) * shrink);
      let placed = false;
      for (let t = 0; t < 60 && !placed; t++) {
        const b: [number, number, number] = [rng.range(0, 1 - side), rng.range(0, 1 - side), side];
        if (boxes.every((q) => overlap(b, q) <= maxOverlap)) {
          boxes.push(b);
          placed = true;
        }
      }
      if (!placed) break;
    }
    if (boxes.length === n) return boxes;
    shrink *= 0.95;
  }
}

const mix = (a: Rgb, b: Rgb, t: number, c: number) => a[c]! + (b[c]! - a[c]!) * t;

/** The background as RGB pixels [S, S, 3]. One loop per kind, with what does not change per pixel hoisted out
 * (backgrounds were two thirds of a scene's drawing time). */
export function drawBackground(bg: Background, S: number): Uint8Array {
  const out = new Uint8Array(S * S * 3);
  // t in [0, 1] picks a colour between the two: 256 levels, looked up.
  const lut = new Uint8Array(256 * 3);
  for (let q = 0; q < 256; q++)
    for (let c = 0; c < 3; c++) lut[q * 3 + c] = Math.round(mix(bg.colors[0], bg.colors[1] ?? bg.colors[0], q / 255, c));
  const put = (i: number, t: number) => {
    const q = (t <= 0 ? 0 : t >= 1 ? 255 : (t * 255 + 0.5) | 0) * 3;
    out[i * 3] = lut[q]!;
    out[i * 3 + 1] = lut[q + 1]!;
    out[i * 3 + 2] = lut[q + 2]!;
  };
  const coord = Float64Array.from({ length: S }, (_, i) => (i + 0.5) / S); // pixel centres in [0, 1]
  switch (bg.kind) {
    case 'solid':
      for (let i = 0; i < S * S; i++) put(i, 0);
      break;
    case 'gradient': {
      // biome-ignore lint/suspicious/noApproximativeNumericConstant: the built scenes' pixels depend on these exact values
      const cx = Math.cos(bg.angle) / 1.4142;
      // biome-ignore lint/suspicious/noApproximativeNumericConstant: as above
      const cy = Math.sin(bg.angle) / 1.4142;
      for (let y = 0; y < S; y++) {
        for (let x = 0; x < S; x++) {
          const u = coord[x]! - 0.5;
          const v = coord[y]! - 0.5;
          // biome-ignore lint/suspicious/noApproximativeNumericConstant: as above
          put(y * S + x, bg.radial ? Math.sqrt(u * u + v * v) / 0.7071 : 0.5 + u * cx + v * cy);
        }
      }
      break;
    }
    case 'stripes': {
      const cx = Math.cos(bg.angle) / bg.period;
      const cy = Math.sin(bg.angle) / bg.period;
      for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) put(y * S + x, Math.floor(coord[x]! * cx + coord[y]! * cy) & 1);
      break;
    }
    case 'checks':
      for (let y = 0; y < S; y++) {
        const row = Math.floor(coord[y]! / bg.period);
        for (let x = 0; x < S; x++) put(y * S + x, (row + Math.floor(coord[x]! / bg.period)) & 1);
      }
      break;
    case 'dots': {
      const r2 = bg.radius * bg.radius;
      const cell = Float64Array.from(coord, (c) => ((c / bg.period) % 1) - 0.5);
      for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) put(y * S + x, cell[x]! * cell[x]! + cell[y]! * cell[y]! < r2 ? 1 : 0);
      break;
    }
    case 'noise': {
      // Value noise: random levels on a coarse (cells+1)² lattice, smoothly interpolated, plus a little grain.
      const rng = new Rng(bg.seed);
      const n = bg.cells + 1;
      const lattice = Float64Array.from({ length: n * n }, () => rng.uniform());
      const cellOf = new Int32Array(S);
      const frac = new Float64Array(S); // smoothstep of the position inside the cell
      for (let i = 0; i < S; i++) {
        const f = (i / S) * bg.cells;
        const c = Math.min(bg.cells - 1, Math.floor(f));
        const t = f - c;
        cellOf[i] = c;
        frac[i] = t * t * (3 - 2 * t);
      }
      const grain = bg.grain / 4294967296;
      for (let y = 0; y < S; y++) {
        const row = cellOf[y]! * n;
        const ty = frac[y]!;
        for (let x = 0; x < S; x++) {
          const i = row + cellOf[x]!;
          const tx = frac[x]!;
          const top = lattice[i]! + (lattice[i + 1]! - lattice[i]!) * tx;
          const bottom = lattice[i + n]! + (lattice[i + n + 1]! - lattice[i + n]!) * tx;
          put(y * S + x, top + (bottom - top) * ty + (rng.nextU32() - 2147483648) * grain);
        }
      }
      break;
    }
  }
  return out;
}

/** A member's box in whole pixels of an S-px scene: [x, y, side]. */
export function pixelBox(box: readonly [number, number, number], S: number): [number, number, number] {
  const side = Math.max(1, Math.round(box[2] * S));
  return [Math.min(S - side, Math.round(box[0] * S)), Math.min(S - side, Math.round(box[1] * S)), side];
}

/** Draws a scene: RGB pixels [S, S, 3]; members are composited in order (premultiplied "over"). */
export function drawScene(spec: SceneSpec, S: number, drawingOf: (m: SceneMember) => SquareSvg): Uint8Array {
  const img = drawBackground(spec.background, S);
  for (const m of spec.members) {
    const [x0, y0, side] = pixelBox(m.box, S);
    const px = renderSvgRgba(drawingOf(m), side); // [side, side, 4], premultiplied
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const s = (y * side + x) * 4;
        const a = px[s + 3]!;
        if (a === 0) continue;
        const d = ((y0 + y) * S + x0 + x) * 3;
        const k = 1 - a / 255;
        img[d] = Math.round(px[s]! + img[d]! * k);
        img[d + 1] = Math.round(px[s + 1]! + img[d + 1]! * k);
        img[d + 2] = Math.round(px[s + 2]! + img[d + 2]! * k);
      }
    }
  }
  return img;
}
