// One data-parallel training worker (train/parallel.ts): a replica of the head with its own ONNX Runtime
// sessions. A step: copy the shared weights in, forward + backward on its share of the images (the pooled
// features go to the main thread, which computes the InfoNCE over the whole batch; their gradient comes back
// mid-step), gradients into its shared slot. An update: sum every worker's gradient over its own shard of
// the parameters and take the Adam + EMA step on the shared master there. Any exception is reported to the
// main thread, which fails the step naming this worker.
import { parentPort } from 'node:worker_threads';
import { ClipDecoderHead, type ClipExchange } from '../head/head.ts';
import { adamEmaKernel } from '../nn/fused.ts';
import { OrtMatmul } from '../nn/ort-matmul.ts';
import { Rng } from '../nn/rng.ts';
import { adamScalars } from './adam.ts';
import type { BatchViews, InitMessage, StepMessage, UpdateMessage, WorkerReply } from './parallel.ts';

const port = parentPort;
if (!port) throw new Error('parallel-worker.ts runs as a worker thread of train/parallel.ts');

interface State {
  init: InitMessage;
  head: ClipDecoderHead;
  weights: Float32Array;
  m: Float32Array;
  v: Float32Array;
  ema: Float32Array | null;
  grads: Float32Array[];
  ctrl: Int32Array;
  clipLoss: Float64Array;
  /** The shard's summed gradient (scratch). */
  g: Float32Array;
  // the step's inputs, in this worker's own memory where ONNX Runtime reads them
  features: Float32Array;
  queries: Float32Array;
  views?: BatchViews;
}
let st: State | null = null;
let gen = 0;

const reply = (m: WorkerReply) => port.postMessage(m);

function setup(init: InitMessage): State {
  const head = new ClipDecoderHead(init.config, new OrtMatmul({ threads: init.threads }));
  const names = head.params.list.map((p) => p.name);
  if (names.join('\n') !== init.params.map((p) => p.name).join('\n'))
    throw new Error(`the worker's head has parameters ${names.join(', ')}; the main thread's differ`);
  const [lo, hi] = init.shard;
  return {
    init,
    head,
    weights: new Float32Array(init.weights),
    m: new Float32Array(init.adamM),
    v: new Float32Array(init.adamV),
    ema: init.ema ? new Float32Array(init.ema) : null,
    grads: init.grads.map((g) => new Float32Array(g)),
    ctrl: new Int32Array(init.ctrl),
    clipLoss: new Float64Array(init.clipLoss),
    g: new Float32Array(hi - lo),
    features: new Float32Array(0),
    queries: new Float32Array(0),
  };
}

function step(s: State, m: StepMessage): number {
  const { head } = s;
  const D = head.config.dModel,
    C = head.config.inputDim;
  // views of the shared batch (a message brings new SharedArrayBuffer objects, over the same memory)
  const b = m.batch;
  s.views = {
    features: new Float32Array(b.features),
    queries: new Float32Array(b.queries),
    targets: new Float32Array(b.targets),
    offset: new Float32Array(b.logitOffset),
    pooled: new Float32Array(b.pooled),
    dPooled: new Float32Array(b.dPooled),
  };
  const v = s.views;
  // the weights this step starts from (ORT cannot read shared memory: copy into the replica's own arrays)
  const list = head.params.list;
  s.init.params.forEach((e, k) => list[k].data.set(s.weights.subarray(e.w, e.w + e.n)));
  // this worker's images, and the label queries, into its own arrays
  const nf = m.B * m.T * C;
  if (s.features.length !== nf) s.features = new Float32Array(nf);
  s.features.set(v.features.subarray(m.row0 * m.T * C, m.row0 * m.T * C + nf));
  if (m.hasQueries) {
    if (s.queries.length !== m.queryLength) s.queries = new Float32Array(m.queryLength);
    s.queries.set(v.queries.subarray(0, m.queryLength));
  }
  const injectFault = () => {
    if (m.fault === 'throw') throw new Error('injected fault (test)');
    if (m.fault === 'exit') process.exit(3);
  };
  let exchange: ClipExchange | undefined;
  if (m.useClip) {
    exchange = {
      send(pooled) {
        injectFault();
        v.pooled.set(pooled, m.row0 * D);
        reply({ type: 'pooled', gen: m.gen });
      },
      receive(dPooled) {
        // wait for the main thread's InfoNCE over the whole batch (or an abort)
        while (Atomics.load(s.ctrl, 0) < m.gen) {
          if (Atomics.load(s.ctrl, 1) !== 0) throw new Error('aborted: another worker failed');
          Atomics.wait(s.ctrl, 0, Atomics.load(s.ctrl, 0), 1000);
        }
        dPooled.set(v.dPooled.subarray(m.row0 * D, (m.row0 + m.B) * D));
        return s.clipLoss[0];
      },
    };
  } else injectFault();
  const rows = (a: Float32Array) => a.subarray(m.row0 * m.L, (m.row0 + m.B) * m.L);
  const losses = head.forwardBackward(
    {
      features: s.features,
      B: m.B,
      T: m.T,
      queries: m.hasQueries ? s.queries : undefined,
      targets: rows(v.targets),
      logitOffset: m.hasOffset ? rows(v.offset) : undefined,
    },
    { alpha: m.alpha, beta: m.beta, rng: new Rng(m.seed), asl: m.asl, clipExchange: exchange },
  );
  const slot = s.grads[s.init.index];
  s.init.params.forEach((e, k) => {
    if (e.g >= 0 && !e.clip) slot.set(list[k].grad!, e.g);
  });
  return losses.asl;
}

/** Σ_workers of the gradients over this worker's shard, then Adam + EMA there (element-wise: the same numbers as one pass). */
function update(s: State, u: UpdateMessage): void {
  if (u.fault === 'throw') throw new Error('injected fault in the update (test)');
  const { beta2, eps, weightDecay, emaDecay } = s.init.adam;
  const { stepSize, bc2sqrt } = adamScalars(u.lr, u.beta1, u.t, beta2);
  const [lo, hi] = s.init.shard;
  for (const e of s.init.params) {
    if (e.g < 0) continue;
    const a = Math.max(lo, e.g),
      b = Math.min(hi, e.g + e.n);
    if (a >= b) continue;
    const g = s.g.subarray(a - lo, b - lo);
    g.set(s.grads[0].subarray(a, b));
    if (!e.clip)
      for (let w = 1; w < u.active; w++) {
        const src = s.grads[w];
        for (let i = 0; i < g.length; i++) g[i] += src[a + i];
      }
    const w0 = e.w + (a - e.g),
      w1 = e.w + (b - e.g);
    adamEmaKernel({
      w: s.weights.subarray(w0, w1),
      g,
      m: s.m.subarray(a, b),
      v: s.v.subarray(a, b),
      ema: s.ema ? s.ema.subarray(w0, w1) : null,
      emaDecay,
      weightDecay: e.decay ? weightDecay : 0,
      beta1: u.beta1,
      beta2,
      stepSize,
      bc2sqrt,
      eps,
    });
  }
}

port.on('message', (m: InitMessage | StepMessage | UpdateMessage) => {
  try {
    if (m.type === 'init') {
      st = setup(m);
      reply({ type: 'ready', index: m.index });
      return;
    }
    gen = m.gen;
    if (!st) throw new Error(`${m.type} before init`);
    if (m.type === 'step') reply({ type: 'done', gen: m.gen, asl: step(st, m) });
    else if (m.type === 'update') {
      update(st, m);
      reply({ type: 'updated', gen: m.gen });
    }
  } catch (e) {
    reply({ type: 'error', gen, message: (e as Error)?.stack ?? String(e) });
  }
});
