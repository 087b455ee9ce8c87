// npm run bench:train [-- --steps 5 --rss-steps 200 --threads 2 --workers 2 --no-torch --quick]
//
// Prints the CPU's vector extensions first (results differ between AVX2 and AVX-512 machines).
// One CLIP-Decoder training step (forward, backward, Adam + EMA) at batch 32, 49 tokens × 768, 80 labels with
// 512-d queries, D = 768, FFN 2048, 8 heads (the paper's shapes), on one thread (ORT using --threads) and
// data-parallel over --workers worker threads (train/parallel.ts), the two interleaved step by step, timed
// against, in the same run:
//   (a) the PyTorch reference on identical shapes and threads (tools/head_reference.py --bench), and
//   (b) the machine's peak matmul rate (a big ONNX Runtime GEMM): the step's exact matmul FLOPs at that rate
//       is the fastest the step could possibly be → "% of peak".
// Then the experiments' shapes (tools/experiments.ts on pico-CLIP v2 features: B 56, T 36 × C 160, E 128,
// N 360 seen labels, D 128, 4 heads, FFN 512, CLIP projection 512, residual CLIP-Decoder+ logit offset):
// images/s and seconds per 5,355-image epoch, one thread vs --workers, against the FLOP bound.
// Then the inference cost per image for 100 / 1,000 / 10,000 labels (must grow linearly) against the GEMM
// bound, and peak RSS over a run of --rss-steps training steps (must not grow).
import { spawnSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { OrtMatmul } from '../src/nn/ort-matmul.ts';
import { planMatmul, type MatmulBackend, type MatmulOptions } from '../src/nn/matmul.ts';
import type { Buf } from '../src/nn/tensor.ts';
import { Rng } from '../src/nn/rng.ts';
import { defaultHeadConfig } from '../src/head/config.ts';
import type { TrainBatch } from '../src/head/head.ts';
import { Trainer } from '../src/train/trainer.ts';
import { ParallelTrainer, defaultWorkers, validateWorkers } from '../src/train/parallel.ts';
import { readFileSync } from 'node:fs';
import type { HeadConfig } from '../src/head/config.ts';
import { ClipDecoderHead } from '../src/head/head.ts';

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
const WORKERS = validateWorkers(num('workers', defaultWorkers()), '--workers');
const SHAPE = { B: 32, T: 49, C: 768, E: 512, D: 768, N: 80, F: 2048, H: 8, P: 512 };
/** tools/experiments.ts on pico-CLIP v2 features (tokens 36 × 160, text 128), 360 seen labels, residual head. */
const EXP = { B: 56, T: 36, C: 160, E: 128, D: 128, N: 360, F: 512, H: 4, P: 512, epochImages: 5355 };

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

function makeBatch(r: Rng, shape: { B: number; T: number; C: number; E: number; N: number } = SHAPE, offset = false): TrainBatch {
  const { B, T, C, E, N } = shape;
  return {
    features: Float32Array.from({ length: B * T * C }, () => r.normal()),
    B,
    T,
    queries: Float32Array.from({ length: N * E }, () => r.normal()),
    targets: Float32Array.from({ length: B * N }, () => (r.uniform() < 0.05 ? 1 : 0)),
    captions: Float32Array.from({ length: B * E }, () => r.normal()),
    ...(offset ? { logitOffset: Float32Array.from({ length: B * N }, () => 3 * r.normal()) } : {}),
  };
}

/** The CPU's model name and vector extensions (from /proc/cpuinfo). */
function cpuInfo(): string {
  try {
    const txt = readFileSync('/proc/cpuinfo', 'utf8');
    const model = /model name\s*:\s*(.*)/.exec(txt)?.[1] ?? 'unknown CPU';
    const flags = new Set((/flags\s*:\s*(.*)/.exec(txt)?.[1] ?? '').split(/\s+/));
    const want = [
      'sse4_2',
      'avx',
      'avx2',
      'fma',
      'avx512f',
      'avx512bw',
      'avx512vl',
      'avx512_vnni',
      'avx512_bf16',
      'avx512_fp16',
      'amx_tile',
    ];
    const has = want.filter((f) => flags.has(f));
    const kind = flags.has('avx512f') ? 'AVX-512' : flags.has('avx2') ? 'AVX2 (no AVX-512)' : 'no AVX2';
    return `${model}; ${kind}: ${has.join(' ')}`;
  } catch {
    return 'CPU flags unknown (no /proc/cpuinfo)';
  }
}

/** Exact matmul FLOPs of one training step for a config and batch (a counting backend, third step). */
function countStep(cfg: HeadConfig, batch: TrainBatch, inner: MatmulBackend): { flops: number; ms: number; matmulMs: number } {
  const counter = new CountingMatmul(inner);
  const probe = Trainer.create(cfg, counter, { totalSteps: 10, alpha: 1, beta: 1 });
  probe.trainStep(batch);
  probe.trainStep(batch);
  counter.flops = 0;
  counter.ms = 0;
  const t0 = performance.now();
  probe.trainStep(batch);
  const ms = performance.now() - t0;
  probe.head.releaseBuffers();
  return { flops: counter.flops, ms, matmulMs: counter.ms };
}

/**
 * Step times of the one-thread Trainer and the W-worker ParallelTrainer on the same batch, interleaved step by
 * step (A, B, A, B, …) so that a change in the machine's load hits both alike. Returns both trainers.
 */
async function interleaved(
  cfg: HeadConfig,
  batch: TrainBatch,
  be: MatmulBackend,
  steps: number,
): Promise<{ one: number[]; par: number[]; trainer: Trainer; parallel: ParallelTrainer | null }> {
  const trainer = Trainer.create(cfg, be, { totalSteps: 100000, alpha: 1, beta: 1 });
  const parallel =
    WORKERS > 1
      ? await ParallelTrainer.create(Trainer.create(cfg, be, { totalSteps: 100000, alpha: 1, beta: 1 }), { workers: WORKERS })
      : null;
  for (let i = 0; i < 2; i++) {
    trainer.trainStep(batch);
    await parallel?.trainStep(batch);
  }
  const one: number[] = [],
    par: number[] = [];
  for (let i = 0; i < steps; i++) {
    let t0 = performance.now();
    trainer.trainStep(batch);
    one.push(performance.now() - t0);
    if (parallel) {
      t0 = performance.now();
      await parallel.trainStep(batch);
      par.push(performance.now() - t0);
    }
  }
  return { one, par, trainer, parallel };
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
    `CPU: ${cpuInfo()}; ${availableParallelism()} cores, load average ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  );
  log(
    `bench:train  B=${B} T=${T} C=${SHAPE.C} E=${SHAPE.E} N=${N} D=${D} FFN=${F} heads=${H} CLIP proj=${SHAPE.P}, dropout 0.1, ORT threads ${THREADS} (one thread) / ${Math.max(1, Math.floor(availableParallelism() / WORKERS))} per worker × ${WORKERS} workers`,
  );
  const ort = new OrtMatmul({ threads: THREADS });
  const peak0 = peakGflops(ort);

  // exact matmul FLOPs of one step
  const cfg = defaultHeadConfig({ queryDim: SHAPE.E, captionDim: SHAPE.E, clipProjDim: SHAPE.P });
  const batch = makeBatch(new Rng(2));
  const probe = countStep(cfg, batch, ort);
  const flops = probe.flops;

  // the TS step: one thread and W workers, interleaved
  const run = await interleaved(cfg, batch, ort, STEPS);
  const trainer = run.trainer;
  const tsMs = median(run.one);
  const parMs = run.par.length ? median(run.par) : Number.NaN;
  await run.parallel?.close();

  // PyTorch on the same shapes
  const torch = flag('no-torch') ? 'PyTorch reference skipped (--no-torch)' : runTorch();
  const peak = Math.max(peak0, peakGflops(ort));
  const best = Number.isFinite(parMs) ? Math.min(tsMs, parMs) : tsMs;

  const rate = (ms: number) => flops / ms / 1e6;
  log('');
  log(`matmul FLOPs per step (counted): ${fmt(flops / 1e9, 2)} GFLOP`);
  log(`peak ORT GEMM rate (2048³, best of 8): ${fmt(peak, 0)} GFLOP/s → a step can take no less than ${fmt(flops / peak / 1e6, 0)} ms`);
  log(
    `TypeScript step, one thread: ${fmt(tsMs, 0)} ms (median of ${STEPS}; min ${fmt(Math.min(...run.one), 0)}) = ${fmt(rate(tsMs), 0)} GFLOP/s = ${fmt((100 * rate(tsMs)) / peak, 0)} % of peak`,
  );
  if (run.par.length)
    log(
      `TypeScript step, ${WORKERS} workers: ${fmt(parMs, 0)} ms (median of ${STEPS}; min ${fmt(Math.min(...run.par), 0)}) = ${fmt(rate(parMs), 0)} GFLOP/s = ${fmt((100 * rate(parMs)) / peak, 0)} % of peak (goal ≥ 75 %); ${WORKERS} workers / one thread: ${fmt(parMs / tsMs, 2)}`,
    );
  log(
    `  one instrumented one-thread step: ${fmt(probe.ms, 0)} ms = matmuls ${fmt(probe.matmulMs, 0)} ms (${fmt(flops / probe.matmulMs / 1e6, 0)} GFLOP/s) + everything else ${fmt(probe.ms - probe.matmulMs, 0)} ms (element-wise layers, losses, Adam + EMA)`,
  );
  if (typeof torch === 'string') {
    log(torch);
  } else {
    log(
      `PyTorch ${torch.torch} (${torch.threads} threads, BLAS ${blasLibrary()}): ${fmt(torch.median_ms, 0)} ms per step (median of ${STEPS}), same shapes, dropout, losses, Adam, OneCycle, EMA`,
    );
    log(
      `ratio TypeScript / PyTorch: one thread ${fmt(tsMs / torch.median_ms, 2)}${run.par.length ? `, ${WORKERS} workers ${fmt(parMs / torch.median_ms, 2)}` : ''} (goal ≤ 0.85 on AVX2, ≤ 0.45 on AVX-512)`,
    );
  }

  // the experiments' shapes
  log('');
  const e = EXP;
  log(
    `experiments' shapes: B=${e.B} T=${e.T} C=${e.C} E=${e.E} N=${e.N} D=${e.D} FFN=${e.F} heads=${e.H} CLIP proj=${e.P}, dropout 0.1, residual logit offset, epoch of ${e.epochImages} images`,
  );
  const ecfg = defaultHeadConfig({
    inputDim: e.C,
    queryDim: e.E,
    captionDim: e.E,
    dModel: e.D,
    heads: e.H,
    ffnDim: e.F,
    clipProjDim: e.P,
    zeroOutput: true,
  });
  const ebatch = makeBatch(new Rng(4), e, true);
  const eprobe = countStep(ecfg, ebatch, ort);
  const erun = await interleaved(ecfg, ebatch, ort, Math.max(STEPS, 9));
  await erun.parallel?.close();
  erun.trainer.head.releaseBuffers();
  const eBound = (e.B * peak * 1e9) / eprobe.flops; // images/s at the peak GEMM rate
  const eLine = (what: string, xs: number[]) => {
    const ms = median(xs);
    const ips = (1000 * e.B) / ms;
    log(
      `  ${what}: ${fmt(ms, 1)} ms per step (median of ${xs.length}) = ${fmt(ips, 0)} images/s = ${fmt(e.epochImages / ips, 1)} s per epoch; ${fmt((100 * ips) / eBound, 0)} % of the FLOP bound`,
    );
    return ips;
  };
  log(
    `  matmul FLOPs per step ${fmt(eprobe.flops / 1e9, 3)} GFLOP → FLOP bound at ${fmt(peak, 0)} GFLOP/s: ${fmt(eBound, 0)} images/s (${fmt(e.epochImages / eBound, 2)} s per epoch); one instrumented step: matmuls ${fmt(eprobe.matmulMs, 1)} ms of ${fmt(eprobe.ms, 1)} ms`,
  );
  const ips1 = eLine('one thread', erun.one);
  if (erun.par.length) {
    const ipsW = eLine(`${WORKERS} workers`, erun.par);
    log(`  ${WORKERS} workers / one thread: ${fmt(ipsW / ips1, 2)}× the images/s`);
  }

  // inference cost per image vs label count
  log('');
  log('inference (prepared label set, 8 images, attention maps off):');
  const head = trainer.head;
  head.releaseBuffers();
  const counter = new CountingMatmul(ort);
  const counted = new ClipDecoderHead(head.config, counter);
  counted.params.list.forEach((p, i) => p.data.set(head.params.list[i].data));
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
    counter.flops = 0;
    counted.predict(feats, imgB, T, counted.prepareLabels(labels, q)); // counts the FLOPs (and warms)
    const pflops = counter.flops - 0;
    counted.releaseBuffers();
    head.predict(feats, imgB, T, prep); // warm
    const ts: number[] = [];
    for (let i = 0; i < (n >= 10000 ? 1 : 3); i++) {
      const t1 = performance.now();
      head.predict(feats, imgB, T, prep);
      ts.push(performance.now() - t1);
    }
    const ms = median(ts);
    const perImage = ms / imgB;
    perImageMs.push(perImage);
    log(
      `  ${String(n).padStart(6)} labels: ${fmt(perImage, 2).padStart(8)} ms/image = ${fmt((1000 * imgB) / ms, 1)} images/s (${fmt((1000 * perImage) / n, 2)} µs per image per label); matmuls ${fmt(pflops / imgB / 1e9, 3)} GFLOP/image → ${fmt(pflops / ms / 1e6, 0)} GFLOP/s = ${fmt((100 * pflops) / ms / 1e6 / peak, 0)} % of the GEMM bound; label set prepared once in ${fmt(prepMs, 1)} ms`,
    );
  }
  // cost = fixed (memory + its K/V, per image) + per-label slope: compare the slopes of the two intervals
  const slope1 = (perImageMs[1] - perImageMs[0]) / (counts[1] - counts[0]);
  const slope2 = (perImageMs[2] - perImageMs[1]) / (counts[2] - counts[1]);
  log(
    `  marginal cost per label: ${fmt(1000 * slope1, 1)} µs (100→1,000) vs ${fmt(1000 * slope2, 1)} µs (1,000→10,000): ratio ${fmt(slope2 / slope1, 2)} (1.00 = linear); fixed part ≈ ${fmt(perImageMs[0] - 100 * slope1, 1)} ms/image`,
  );
  head.releaseBuffers();

  // peak RSS over a long run (the configuration that won above)
  log('');
  const rssMb = () => process.resourceUsage().maxRSS / 1024;
  const early = Math.min(10, RSS_STEPS);
  const useParallel = WORKERS > 1 && best === parMs;
  const rssTrainer = useParallel ? await ParallelTrainer.create(trainer, { workers: WORKERS }) : null;
  const stepOnce = async () => {
    if (rssTrainer) await rssTrainer.trainStep(batch);
    else trainer.trainStep(batch);
  };
  const t0 = performance.now();
  for (let i = 0; i < early; i++) await stepOnce();
  const rssEarly = rssMb();
  for (let i = early; i < RSS_STEPS; i++) await stepOnce();
  const rssEnd = rssMb();
  const avg = (performance.now() - t0) / RSS_STEPS;
  await rssTrainer?.close();
  log(
    `peak RSS (${useParallel ? `${WORKERS} workers` : 'one thread'}) after ${early} steps: ${fmt(rssEarly, 0)} MB; after ${RSS_STEPS} steps: ${fmt(rssEnd, 0)} MB (growth ${fmt(rssEnd - rssEarly, 0)} MB); mean step over the run ${fmt(avg, 0)} ms`,
  );
  ort.dispose();
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});
