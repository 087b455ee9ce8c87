// One data-parallel training worker (train/parallel.ts): a replica of the head with its own ONNX Runtime
// sessions. Per step: copy the shared weights in, forward + backward on its share of the images (the CLIP
// loss's pooled features go to the main thread and their gradient comes back mid-step), copy the gradients
// out. Any exception is reported to the main thread, which fails the step naming this worker.
import { parentPort } from 'node:worker_threads';
import { ClipDecoderHead, type ClipExchange } from '../head/head.ts';
import { OrtMatmul } from '../nn/ort-matmul.ts';
import { Rng } from '../nn/rng.ts';
import type { InitMessage, StepMessage, WorkerReply } from './parallel.ts';

const port = parentPort;
if (!port) throw new Error('parallel-worker.ts runs as a worker thread of train/parallel.ts');

interface State {
  head: ClipDecoderHead;
  init: InitMessage;
  weights: Float32Array;
  grads: Float32Array;
  ctrl: Int32Array;
  clipLoss: Float64Array;
  wOffsets: number[];
  gOffsets: number[];
}
let st: State | null = null;
let gen = 0;

const reply = (m: WorkerReply) => port.postMessage(m);

function setup(init: InitMessage): State {
  const head = new ClipDecoderHead(init.config, new OrtMatmul({ threads: init.threads }));
  const names = head.params.list.map((p) => p.name);
  if (names.join('\n') !== init.names.join('\n'))
    throw new Error(`the worker's head has parameters ${names.join(', ')}; the main thread's differ`);
  const clipNames = new Set(head.clip?.params.map((p) => p.name) ?? []);
  const wOffsets: number[] = [],
    gOffsets: number[] = [];
  let nw = 0,
    ng = 0;
  for (const p of head.params.list) {
    wOffsets.push(nw);
    nw += p.data.length;
    if (p.grad && !clipNames.has(p.name)) {
      gOffsets.push(ng);
      ng += p.data.length;
    } else gOffsets.push(-1);
  }
  return {
    head,
    init,
    weights: new Float32Array(init.weights),
    grads: new Float32Array(init.grads),
    ctrl: new Int32Array(init.ctrl),
    clipLoss: new Float64Array(init.clipLoss),
    wOffsets,
    gOffsets,
  };
}

function step(s: State, m: StepMessage): number {
  const { head } = s;
  const D = head.config.dModel;
  // the weights this step starts from (ORT cannot read shared memory: copy into the replica's own arrays)
  head.params.list.forEach((p, k) => p.data.set(s.weights.subarray(s.wOffsets[k], s.wOffsets[k] + p.data.length)));
  const injectFault = () => {
    if (m.fault === 'throw') throw new Error('injected fault (test)');
    if (m.fault === 'exit') process.exit(3);
  };
  let exchange: ClipExchange | undefined;
  if (m.useClip) {
    const shared = new Float32Array(m.dPooled);
    exchange = {
      send(pooled) {
        injectFault();
        reply({ type: 'pooled', gen: m.gen, pooled: pooled.slice() });
      },
      receive(dPooled) {
        // wait for the main thread's InfoNCE over the whole batch (or an abort)
        while (Atomics.load(s.ctrl, 0) < m.gen) {
          if (Atomics.load(s.ctrl, 1) !== 0) throw new Error('aborted: another worker failed');
          Atomics.wait(s.ctrl, 0, Atomics.load(s.ctrl, 0), 1000);
        }
        dPooled.set(shared.subarray(m.row0 * D, (m.row0 + m.B) * D));
        return s.clipLoss[0];
      },
    };
  } else injectFault();
  const losses = head.forwardBackward(
    { features: m.features, B: m.B, T: m.T, queries: m.queries, targets: m.targets, logitOffset: m.logitOffset },
    { alpha: m.alpha, beta: m.beta, rng: new Rng(m.seed), asl: m.asl, clipExchange: exchange },
  );
  head.params.list.forEach((p, k) => {
    if (s.gOffsets[k] >= 0) s.grads.set(p.grad!, s.gOffsets[k]);
  });
  return losses.asl;
}

port.on('message', (m: InitMessage | StepMessage) => {
  try {
    if (m.type === 'init') {
      st = setup(m);
      reply({ type: 'ready', index: m.index });
    } else if (m.type === 'step') {
      gen = m.gen;
      if (!st) throw new Error('step before init');
      reply({ type: 'done', gen: m.gen, asl: step(st, m) });
    }
  } catch (e) {
    reply({ type: 'error', gen, message: (e as Error)?.stack ?? String(e) });
  }
});
