// npm run bench:train [-- --steps 5 --rss-steps 200 --threads 2 --no-torch --quick]
//
// One CLIP-Decoder training step (forward, backward, Adam + EMA) at batch 32, 49 tokens × 768, 80 labels with
// 512-d queries, D = 768, FFN 2048, 8 heads, timed against, in the same run:
//   (a) the PyTorch reference on identical shapes and threads (tools/head_reference.py --bench), and
//   (b) the machine's peak matmul rate (a big ONNX Runtime GEMM): the step's exact matmul FLOPs at that rate
//       is the fastest the step could possibly be → "% of peak".
// Then the inference cost per image for 100 / 1,000 / 10,000 labels (must grow linearly), and peak RSS over
// a run of --rss-steps training steps (must not grow).
import { spawnSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OrtMatmul } from '../src/nn/ort-matmul.ts';
import { planMatmul, type MatmulBackend, type MatmulOptions } from '../src/nn/matmul.ts';
import type { Buf } from '../src/nn/tensor.ts';
import { Rng } from '../src/nn/rng.ts';
import { defaultHeadConfig } from '../src/head/config.ts';
import type { TrainBatch } from '../src/head/head.ts';
import { Trainer } from '../src/train/trainer.ts';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const num = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const quick = flag('quick');
const STEPS = num('steps', quick ? 3 : 5);
const RSS_STEPS = num('rss-steps', quick ? 30 : 200);
const THREADS = num('threads', 2);
const SHAPE = { B: 32, T: 49, C: 768, E: 512, D: 768, N: 80, F: 2048, H: 8, P: 512 };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x: number, d = 1) => x.toFixed(d);
const log = (s = '') => process.stdout.write(`${s}\n`);

/** Wraps a backend: adds up the FLOPs of every product (2 per multiply-add) and the time spent in them. */
class CountingMatmul implements MatmulBackend {
  readonly name = 'counting';
  flops = 0;
  ms = 0;
  constructor(private readonly inner: MatmulBackend) {}
  matmul(out: Buf, a: Buf, aDims: readonly number[], b: Buf, bDims: readonly number[], o: MatmulOptions = {}): void {
    const p = planMatmul(aDims, bDims, !!o.transA, !!o.transB);
    this.flops += 2 * p.batchCount * p.m * p.n * p.k;
    const t0 = performance.now();
    this.inner.matmul(out, a, aDims, b, bDims, o);
    this.ms += performance.now() - t0;
  }
  dispose(): void {}
}

/** Which BLAS Debian's PyTorch will load (libblas.so.3 is an alternatives link). */
function blasLibrary(): string {
  try {
    return realpathSync('/usr/lib/x86_64-linux-gnu/libblas.so.3').replace('/usr/lib/x86_64-linux-gnu/', '');
  } catch {
    return 'unknown';
  }
}

/** Best GFLOP/s of a square ORT GEMM (transB, as the Linear layers use it). */
function peakGflops(be: OrtMatmul, n = 2048, reps = 8): number {
  const r = new Rng(1);
  const a = Float32Array.from({ length: n * n }, () => r.normal());
  const b = Float32Array.from({ length: n * n }, () => r.normal());
  const c = new Float32Array(n * n);
  be.matmul(c, a, [n, n], b, [n, n], { transB: true });
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    be.matmul(c, a, [n, n], b, [n, n], { transB: true });
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * n * n * n) / best / 1e6;
}

function makeBatch(r: Rng): TrainBatch {
  const { B, T, C, E, N } = SHAPE;
  return {
    features: Float32Array.from({ length: B * T * C }, () => r.normal()),
    B,
    T,
    queries: Float32Array.from({ length: N * E }, () => r.normal()),
    targets: Float32Array.from({ length: B * N }, () => (r.uniform() < 0.05 ? 1 : 0)),
    captions: Float32Array.from({ length: B * E }, () => r.normal()),
  };
}

interface TorchResult {
  torch: string;
  threads: number;
  blas_info: string;
  median_ms: number;
  min_ms: number;
}

function runTorch(): TorchResult | string {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const { B, T, C, E, D, N, F, H, P } = SHAPE;
  const args = [
    'tools/head_reference.py',
    '--bench',
    '--threads',
    String(THREADS),
    '--steps',
    String(STEPS),
    '--warmup',
    '2',
    '--B',
    String(B),
    '--T',
    String(T),
    '--C',
    String(C),
    '--E',
    String(E),
    '--D',
    String(D),
    '--N',
    String(N),
    '--F',
    String(F),
    '--P',
    String(P),
    '--heads',
    String(H),
  ];
  const r = spawnSync('/usr/bin/python3', args, { cwd: root, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(THREADS) } });
  if (r.error)
    return `PyTorch reference not run: ${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? '/usr/bin/python3 not found' : r.error.message}`;
  if (r.status !== 0) {
    const err = (r.stderr || '').trim().split('\n').pop() ?? '';
    return `PyTorch reference not run: ${/No module named 'torch'/.test(r.stderr) ? 'python3-torch is not installed' : err}`;
  }
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as TorchResult;
}

async function main(): Promise<void> {
  const { B, T, N, D, F, H } = SHAPE;
  log(
    `bench:train  B=${B} T=${T} C=${SHAPE.C} E=${SHAPE.E} N=${N} D=${D} FFN=${F} heads=${H} CLIP proj=${SHAPE.P}, dropout 0.1, ORT threads ${THREADS}`,
  );
  const ort = new OrtMatmul({ threads: THREADS });
  const peak0 = peakGflops(ort);

  // exact matmul FLOPs of one step
  const counter = new CountingMatmul(ort);
  const cfg = defaultHeadConfig({ queryDim: SHAPE.E, captionDim: SHAPE.E, clipProjDim: SHAPE.P });
  const probe = Trainer.create(cfg, counter, { totalSteps: 10, alpha: 1, beta: 1 });
  const batch = makeBatch(new Rng(2));
  probe.trainStep(batch);
  probe.trainStep(batch);
  counter.flops = 0;
  counter.ms = 0;
  const tProbe = performance.now();
  probe.trainStep(batch);
  const probeMs = performance.now() - tProbe;
  const flops = counter.flops,
    probeMatmulMs = counter.ms;
  probe.head.releaseBuffers();

  // the TS step
  const trainer = Trainer.create(cfg, ort, { totalSteps: 100000, alpha: 1, beta: 1 });
  for (let i = 0; i < 2; i++) trainer.trainStep(batch);
  const times: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    const t0 = performance.now();
    trainer.trainStep(batch);
    times.push(performance.now() - t0);
  }
  const tsMs = median(times);

  // PyTorch on the same shapes
  const torch = flag('no-torch') ? 'PyTorch reference skipped (--no-torch)' : runTorch();
  const peak = Math.max(peak0, peakGflops(ort));

  const achieved = flops / tsMs / 1e6;
  log('');
  log(`matmul FLOPs per step (counted): ${fmt(flops / 1e9, 2)} GFLOP`);
  log(`peak ORT GEMM rate (2048³, best of 8): ${fmt(peak, 0)} GFLOP/s → a step can take no less than ${fmt(flops / peak / 1e6, 0)} ms`);
  log(
    `TypeScript step: ${fmt(tsMs, 0)} ms (median of ${STEPS}; min ${fmt(Math.min(...times), 0)}) = ${fmt(achieved, 0)} GFLOP/s = ${fmt((100 * achieved) / peak, 0)} % of peak (goal ≥ 75 %)`,
  );
  log(
    `  one instrumented step: ${fmt(probeMs, 0)} ms = matmuls ${fmt(probeMatmulMs, 0)} ms (${fmt(flops / probeMatmulMs / 1e6, 0)} GFLOP/s) + everything else ${fmt(probeMs - probeMatmulMs, 0)} ms (element-wise layers, losses, Adam + EMA)`,
  );
  if (typeof torch === 'string') {
    log(torch);
  } else {
    log(
      `PyTorch ${torch.torch} (${torch.threads} threads, BLAS ${blasLibrary()}): ${fmt(torch.median_ms, 0)} ms per step (median of ${STEPS}), same shapes, dropout, losses, Adam, OneCycle, EMA`,
    );
    log(`ratio TypeScript / PyTorch: ${fmt(tsMs / torch.median_ms, 2)} (goal ≤ 0.40)`);
  }

  // inference cost per image vs label count
  log('');
  log('inference (prepared label set, 8 images, attention maps off):');
  const head = trainer.head;
  head.releaseBuffers();
  const r = new Rng(3);
  const imgB = 8;
  const feats = Float32Array.from({ length: imgB * T * SHAPE.C }, () => r.normal());
  const perImageMs: number[] = [];
  const counts = [100, 1000, 10000];
  for (const n of counts) {
    const q = Float32Array.from({ length: n * SHAPE.E }, () => r.normal());
    const labels = Array.from({ length: n }, (_, i) => `label ${i}`);
    const t0 = performance.now();
    const prep = head.prepareLabels(labels, q);
    const prepMs = performance.now() - t0;
    head.predict(feats, imgB, T, prep); // warm
    const ts: number[] = [];
    for (let i = 0; i < (n >= 10000 ? 1 : 3); i++) {
      const t1 = performance.now();
      head.predict(feats, imgB, T, prep);
      ts.push(performance.now() - t1);
    }
    const perImage = median(ts) / imgB;
    perImageMs.push(perImage);
    log(
      `  ${String(n).padStart(6)} labels: ${fmt(perImage, 2).padStart(8)} ms/image  (${fmt((1000 * perImage) / n, 2)} µs per image per label; label set prepared once in ${fmt(prepMs, 1)} ms)`,
    );
  }
  // cost = fixed (memory + its K/V, per image) + per-label slope: compare the slopes of the two intervals
  const slope1 = (perImageMs[1] - perImageMs[0]) / (counts[1] - counts[0]);
  const slope2 = (perImageMs[2] - perImageMs[1]) / (counts[2] - counts[1]);
  log(
    `  marginal cost per label: ${fmt(1000 * slope1, 1)} µs (100→1,000) vs ${fmt(1000 * slope2, 1)} µs (1,000→10,000): ratio ${fmt(slope2 / slope1, 2)} (1.00 = linear); fixed part ≈ ${fmt(perImageMs[0] - 100 * slope1, 1)} ms/image`,
  );
  head.releaseBuffers();

  // peak RSS over a long run
  log('');
  const rssMb = () => process.resourceUsage().maxRSS / 1024;
  const early = Math.min(10, RSS_STEPS);
  const t0 = performance.now();
  for (let i = 0; i < early; i++) trainer.trainStep(batch);
  const rssEarly = rssMb();
  for (let i = early; i < RSS_STEPS; i++) trainer.trainStep(batch);
  const rssEnd = rssMb();
  const avg = (performance.now() - t0) / RSS_STEPS;
  log(
    `peak RSS after ${early} steps: ${fmt(rssEarly, 0)} MB; after ${RSS_STEPS} steps: ${fmt(rssEnd, 0)} MB (growth ${fmt(rssEnd - rssEarly, 0)} MB); mean step over the run ${fmt(avg, 0)} ms`,
  );
  ort.dispose();
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});
