// Benchmark: ZSL + GZSL metrics (per-label AP for every label, micro P/R/F1 at K = 3 and 5) over 10,000 images ×
// 1,000 labels, against a baseline measured in the same run: a plain numeric sort of every label's score column
// (the least any ranking metric has to do). Target: metrics ≤ 5 s. Run: npm run bench:metrics
import { createRng } from '../src/data/random.ts';
import { evaluateProtocol } from '../src/eval/protocol.ts';

const N = Number(process.env.BENCH_IMAGES ?? 10_000);
const L = Number(process.env.BENCH_LABELS ?? 1_000);
const UNSEEN = Math.round(L / 10);

const rng = createRng(0);
const scores = new Float32Array(N * L); // [N, L]
const targets = new Uint8Array(N * L);
for (let i = 0; i < N * L; i++) {
  targets[i] = rng.next() < 0.01 ? 1 : 0;
  scores[i] = Math.round((rng.next() + 0.3 * targets[i]!) * 1000) / 1000; // quantised: plenty of ties
}
const labels = Array.from({ length: L }, (_, j) => `label${j}`);
const seen = labels.slice(0, L - UNSEEN);
const unseen = labels.slice(L - UNSEEN);

function timeIt(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

// Baseline: copy out each label's column and sort it.
const baseline = timeIt(() => {
  const col = new Float32Array(N);
  for (let j = 0; j < L; j++) {
    for (let i = 0; i < N; i++) col[i] = scores[i * L + j]!;
    col.sort();
  }
});

let result: ReturnType<typeof evaluateProtocol> | undefined;
const metrics = timeIt(() => {
  result = evaluateProtocol({ scores, labels, targets, images: N }, seen, unseen);
});

console.log(`metrics over ${N} images × ${L} labels (${UNSEEN} unseen): ZSL + GZSL, per-label AP, P/R/F1@3,5`);
console.log(`  baseline (sort every label column): ${baseline.toFixed(2)} s`);
console.log(
  `  metrics:                            ${metrics.toFixed(2)} s  (${(metrics / baseline).toFixed(2)}× the baseline; target ≤ 5 s)`,
);
console.log(
  `  GZSL mAP ${(result!.gzsl.mAP * 100).toFixed(2)}, ZSL mAP ${(result!.zsl!.mAP * 100).toFixed(2)} (sanity: well above chance ~1)`,
);
