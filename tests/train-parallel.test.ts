// Data-parallel training (src/train/parallel.ts): the summed per-worker gradient equals the one-thread step's,
// a resumed run continues bit-for-bit for a fixed worker count, worker failures stop the step naming the
// worker, and the worker count is validated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Trainer } from '../src/train/trainer.ts';
import { ParallelTrainer, validateWorkers } from '../src/train/parallel.ts';
import type { CheckpointMeta } from '../src/train/checkpoint.ts';
import { defaultHeadConfig, type HeadConfig } from '../src/head/config.ts';
import type { TrainBatch } from '../src/head/head.ts';
import { OrtMatmul } from '../src/nn/ort-matmul.ts';
import { Rng } from '../src/nn/rng.ts';
import { ClipDecoderError } from '../src/errors.ts';

const C = 12,
  E = 8,
  D = 16,
  T = 5,
  N = 6;
const config = (dropout: number, over: Partial<HeadConfig> = {}) =>
  defaultHeadConfig({ inputDim: C, queryDim: E, captionDim: E, dModel: D, heads: 2, ffnDim: 24, clipProjDim: 6, dropout, ...over });
const labels = ['cat', 'dog', 'car', 'tree', 'sky', 'boat'];
const meta: CheckpointMeta = {
  labels,
  clipModel: 'test/tiny-clip',
  promptTemplates: ['a photo of {label}'],
  hyperParameters: {},
  metrics: {},
};

function batchAt(step: number, B = 5, offset = true): TrainBatch {
  const r = new Rng(2000 + step);
  return {
    features: Float32Array.from({ length: B * T * C }, () => r.normal()),
    B,
    T,
    queries: Float32Array.from({ length: N * E }, () => r.normal()),
    targets: Float32Array.from({ length: B * N }, () => (r.uniform() < 0.3 ? 1 : 0)),
    captions: Float32Array.from({ length: B * E }, () => r.normal()),
    ...(offset ? { logitOffset: Float32Array.from({ length: B * N }, () => r.normal()) } : {}),
  };
}

const opts = { seed: 3, maxLr: 3e-3, totalSteps: 8, emaDecay: 0.9, alpha: 0.5, beta: 1 };

/** max |a − b| / max |b| */
function rel(a: Float32Array, b: Float32Array, skip?: [number, number]): number {
  let d = 0,
    m = 0;
  for (let i = 0; i < a.length; i++) {
    if (skip && i >= skip[0] && i < skip[1]) continue;
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return m > 0 ? d / m : d;
}

test('2 workers: losses and every gradient equal the one-thread step (odd batch split 3 + 2, logitOffset split by image)', async () => {
  const be = new OrtMatmul({ threads: 1 });
  const one = Trainer.create(config(0), be, opts);
  const par = await ParallelTrainer.create(Trainer.create(config(0), be, opts), { workers: 2 });
  try {
    for (let s = 0; s < 2; s++) {
      const a = one.trainStep(batchAt(s));
      const b = await par.trainStep(batchAt(s));
      for (const k of ['loss', 'asl', 'clip', 'lr', 'beta1'] as const)
        assert.ok(Math.abs(a[k] - b[k]) <= 1e-5 * Math.abs(a[k]), `${k}: ${a[k]} vs ${b[k]}`);
      const grads = par.lastGradients();
      one.head.params.list.forEach((p) => {
        if (!p.grad) return;
        // the key bias's gradient is rounding noise in both (docs/engine.md, deviations §2)
        const skip: [number, number] | undefined = p.name === 'attn.in_proj_bias' ? [D, 2 * D] : undefined;
        const r = rel(grads.get(p.name)!, p.grad, skip);
        assert.ok(r <= 1e-4, `step ${s}: ${p.name} gradient differs by ${r} (relative)`);
      });
    }
    // Adam + EMA, sharded over the workers, then apply the summed gradient: the weights agree too
    one.head.params.list.forEach((p, i) => {
      const skip: [number, number] | undefined = p.name === 'attn.in_proj_bias' ? [D, 2 * D] : undefined;
      const r = rel(par.head.params.list[i].data, p.data, skip);
      assert.ok(r <= 1e-4, `${p.name} weights differ by ${r} (relative)`);
    });
    one.ema!.shadow.forEach((s, i) => assert.ok(rel(par.trainer.ema!.shadow[i], s) <= 1e-4, `EMA ${i}`));
  } finally {
    await par.close();
    be.dispose();
  }
});

test('2 workers with dropout: a resumed run ends bit-for-bit where the uninterrupted run ends', async () => {
  const be = new OrtMatmul({ threads: 1 });
  const dir = await mkdtemp(join(tmpdir(), 'clip-decoder-par-'));
  const pts: ParallelTrainer[] = [];
  try {
    const full = await ParallelTrainer.create(Trainer.create(config(0.1), be, opts), { workers: 2 });
    pts.push(full);
    for (let s = 0; s < 6; s++) await full.trainStep(batchAt(s));
    const first = await ParallelTrainer.create(Trainer.create(config(0.1), be, opts), { workers: 2 });
    pts.push(first);
    for (let s = 0; s < 3; s++) await first.trainStep(batchAt(s));
    await first.save(dir, meta);
    const resumed = await ParallelTrainer.create((await Trainer.resume(dir, be)).trainer, { workers: 2 });
    pts.push(resumed);
    assert.equal(resumed.step, 3);
    for (let s = 3; s < 6; s++) await resumed.trainStep(batchAt(s));
    const same = (a: Float32Array, b: Float32Array, what: string) =>
      assert.ok(
        a.every((x, i) => Object.is(x, b[i])),
        `${what} differs`,
      );
    full.head.params.list.forEach((p, i) => same(p.data, resumed.head.params.list[i].data, p.name));
    full.trainer.ema!.shadow.forEach((s, i) => same(s, resumed.trainer.ema!.shadow[i], `EMA ${i}`));
    full.trainer.adam.m.forEach((m, i) => same(m, resumed.trainer.adam.m[i], `Adam m ${i}`));
    full.trainer.adam.v.forEach((v, i) => same(v, resumed.trainer.adam.v[i], `Adam v ${i}`));
    assert.deepEqual(full.trainer.rng.getState(), resumed.trainer.rng.getState());
    // the dropout masks did differ between steps (the runs are not trivially equal): weights moved
    const init = Trainer.create(config(0.1), be, opts);
    assert.ok(init.head.params.get('linear1.weight').data.some((x, i) => x !== full.head.params.get('linear1.weight').data[i]));
  } finally {
    for (const p of pts) await p.close();
    be.dispose();
    await rm(dir, { recursive: true, force: true });
  }
});

test('fewer images than workers, no CLIP loss, closed-set: still the one-thread step', async () => {
  const be = new OrtMatmul({ threads: 1 });
  const cfg = config(0, { mode: 'closed-set', numClasses: N, numGroups: 3 });
  const o = { ...opts, alpha: 0 };
  const one = Trainer.create(cfg, be, o);
  const par = await ParallelTrainer.create(Trainer.create(cfg, be, o), { workers: 2 });
  try {
    const b = (s: number) => {
      const x = batchAt(s, 1, false);
      delete x.queries;
      return x;
    };
    const ra = one.trainStep(b(0));
    const rb = await par.trainStep(b(0));
    assert.ok(Math.abs(ra.loss - rb.loss) <= 1e-6 * Math.abs(ra.loss));
    assert.equal(rb.clip, 0);
    one.head.params.list.forEach((p, i) => assert.ok(rel(par.head.params.list[i].data, p.data) <= 1e-6, p.name));
  } finally {
    await par.close();
    be.dispose();
  }
});

test('a worker that throws in the update phase fails the step naming it and says the run must resume', async () => {
  const be = new OrtMatmul({ threads: 1 });
  const par = await ParallelTrainer.create(Trainer.create(config(0.1), be, opts), {
    workers: 2,
    fault: { worker: 0, step: 0, kind: 'throw-in-update' },
  });
  try {
    await assert.rejects(par.trainStep(batchAt(0)), (e: unknown) => {
      assert.ok(e instanceof ClipDecoderError && e.code === 'WORKER_FAILED');
      assert.match(e.message, /training worker 0 of 2 failed at step 0: .*injected fault in the update.*resume from the last checkpoint/s);
      return true;
    });
    assert.equal(par.step, 0);
  } finally {
    await par.close();
    be.dispose();
  }
});

for (const kind of ['throw', 'exit'] as const) {
  test(`a worker that ${kind === 'throw' ? 'throws' : 'exits'} mid-step fails the step naming it; no partial gradient is applied`, async () => {
    const be = new OrtMatmul({ threads: 1 });
    const par = await ParallelTrainer.create(Trainer.create(config(0.1), be, opts), { workers: 2, fault: { worker: 1, step: 1, kind } });
    try {
      await par.trainStep(batchAt(0));
      const before = par.head.params.list.map((p) => Float32Array.from(p.data));
      const err = await par.trainStep(batchAt(1)).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof ClipDecoderError, `expected a ClipDecoderError, got ${err}`);
      assert.equal(err.code, 'WORKER_FAILED');
      assert.match(err.message, /training worker 1 of 2 failed at step 1/);
      assert.match(err.message, kind === 'throw' ? /injected fault/ : /exited \(code 3\)/);
      assert.equal(par.step, 1);
      par.head.params.list.forEach((p, i) =>
        assert.ok(
          p.data.every((x, j) => x === before[i][j]),
          `${p.name} changed`,
        ),
      );
      // the pool is closed: the next step says so at once instead of hanging
      await assert.rejects(par.trainStep(batchAt(1)), /WORKER_FAILED|failed at step 1/);
    } finally {
      await par.close();
      be.dispose();
    }
  });
}

test('the worker count is validated: an integer from 1 to the cores', () => {
  const cores = availableParallelism();
  assert.equal(validateWorkers(1), 1);
  assert.equal(validateWorkers(cores), cores);
  for (const bad of [0, -1, 1.5, cores + 1, Number.NaN, '2']) {
    assert.throws(
      () => validateWorkers(bad, '--workers'),
      (e: unknown) =>
        e instanceof ClipDecoderError && e.code === 'BAD_PARAMETER' && /--workers must be an integer from 1 to/.test(e.message),
    );
  }
});
