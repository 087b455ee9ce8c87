// The TS head against the PyTorch reference (tools/head_reference.py): logits, attention maps, both losses,
// every parameter gradient, and parameters + EMA after 3 Adam + OneCycle steps, within 1e-4 relative.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeSafetensors, type StTensor } from '../src/train/safetensors.ts';
import { ClipDecoderHead, type DropoutMasks, type TrainBatch } from '../src/head/head.ts';
import type { HeadConfig } from '../src/head/config.ts';
import { TsMatmul, type MatmulBackend } from '../src/nn/matmul.ts';
import { OrtMatmul } from '../src/nn/ort-matmul.ts';
import { Adam } from '../src/train/adam.ts';
import { OneCycle } from '../src/train/schedule.ts';
import { Ema } from '../src/train/ema.ts';
import { scaledMaxDiff } from './helpers/assert-close.ts';

const FIX = new URL('./fixtures/', import.meta.url);

interface Fixture {
  meta: {
    config: HeadConfig;
    alpha: number;
    beta: number;
    loss: number;
    asl: number;
    clip: number;
    train?: {
      steps: number;
      maxLr: number;
      weightDecay: number;
      totalSteps: number;
      pctStart: number;
      emaDecay: number;
      history: Array<{ lr: number; beta1: number; loss: number }>;
    };
  };
  t: Map<string, StTensor>;
}

function load(name: string): Fixture {
  const meta = JSON.parse(readFileSync(new URL(`${name}.json`, FIX), 'utf8'));
  const t = decodeSafetensors(readFileSync(new URL(`${name}.safetensors`, FIX)), name).tensors;
  return { meta, t };
}

const f32 = (fx: Fixture, k: string): Float32Array => {
  const v = fx.t.get(k);
  assert.ok(v, `fixture lacks ${k}`);
  return v.data as Float32Array;
};

const TOL = 1e-4;

function build(fx: Fixture, be: MatmulBackend): { head: ClipDecoderHead; batch: TrainBatch; masks?: DropoutMasks } {
  const head = new ClipDecoderHead(fx.meta.config, be);
  for (const p of head.params.list) p.data.set(f32(fx, `param.${p.name}`));
  const feats = fx.t.get('input.features')!;
  const batch: TrainBatch = {
    features: feats.data as Float32Array,
    B: feats.shape[0],
    T: feats.shape[1],
    queries: fx.t.get('input.queries')?.data as Float32Array | undefined,
    targets: f32(fx, 'input.targets'),
    captions: f32(fx, 'input.captions'),
  };
  const masks = fx.t.has('mask.drop1')
    ? {
        drop1: fx.t.get('mask.drop1')!.data as Uint8Array,
        attn: fx.t.get('mask.attn')!.data as Uint8Array,
        drop2: fx.t.get('mask.drop2')!.data as Uint8Array,
        ffn: fx.t.get('mask.ffn')!.data as Uint8Array,
        drop3: fx.t.get('mask.drop3')!.data as Uint8Array,
      }
    : undefined;
  return { head, batch, masks };
}

const backends: Array<[string, () => MatmulBackend]> = [
  ['ts', () => new TsMatmul()],
  ['ort', () => new OrtMatmul({ minFlops: 0 })], // every product through ONNX Runtime, even tiny ones
];

for (const name of ['head-zsl', 'head-zsl-dropout', 'head-closed', 'head-closed-dropout']) {
  for (const [beName, mk] of backends) {
    test(`${name} (${beName}): logits, attention, losses and every gradient match PyTorch`, () => {
      const fx = load(name);
      const be = mk();
      try {
        const { head, batch, masks } = build(fx, be);
        const r = head.forwardBackward(batch, { alpha: fx.meta.alpha, beta: fx.meta.beta, masks });
        assert.ok(
          scaledMaxDiff(head.lastLogits, f32(fx, 'out.logits')) < TOL,
          `logits rel err ${scaledMaxDiff(head.lastLogits, f32(fx, 'out.logits'))}`,
        );
        assert.ok(scaledMaxDiff(head.lastAttention(), f32(fx, 'out.attention')) < TOL, 'attention maps');
        assert.ok(Math.abs(r.asl - fx.meta.asl) <= TOL * Math.abs(fx.meta.asl), `asl ${r.asl} vs ${fx.meta.asl}`);
        assert.ok(Math.abs(r.clip - fx.meta.clip) <= TOL * Math.abs(fx.meta.clip), `clip ${r.clip} vs ${fx.meta.clip}`);
        assert.ok(Math.abs(r.loss - fx.meta.loss) <= TOL * Math.abs(fx.meta.loss), `loss ${r.loss} vs ${fx.meta.loss}`);
        let checked = 0;
        for (const p of head.params.trainable) {
          const e = scaledMaxDiff(p.grad!, f32(fx, `grad.${p.name}`));
          assert.ok(e < TOL, `grad ${p.name}: rel err ${e}`);
          checked++;
        }
        assert.equal(checked, [...fx.t.keys()].filter((k) => k.startsWith('grad.')).length);
      } finally {
        be.dispose();
      }
    });
  }
}

for (const name of ['head-zsl', 'head-closed']) {
  test(`${name}: parameters and EMA after 3 Adam + OneCycle steps match PyTorch`, () => {
    const fx = load(name);
    const tr = fx.meta.train!;
    const be = new OrtMatmul({ minFlops: 0 });
    try {
      const { head, batch } = build(fx, be);
      const adam = new Adam(head.params.list, { weightDecay: tr.weightDecay });
      const sched = new OneCycle({ maxLr: tr.maxLr, totalSteps: tr.totalSteps, pctStart: tr.pctStart });
      const ema = new Ema(head.params.list, tr.emaDecay);
      for (let s = 0; s < tr.steps; s++) {
        const { lr, beta1 } = sched.at(s);
        assert.ok(Math.abs(lr - tr.history[s].lr) <= 1e-12 * tr.maxLr + 1e-9 * lr, `lr at step ${s}: ${lr} vs ${tr.history[s].lr}`);
        assert.ok(Math.abs(beta1 - tr.history[s].beta1) < 1e-12, `beta1 at step ${s}`);
        const r = head.forwardBackward(batch, { alpha: fx.meta.alpha, beta: fx.meta.beta });
        assert.ok(Math.abs(r.loss - tr.history[s].loss) <= TOL * Math.abs(tr.history[s].loss), `loss at step ${s}`);
        adam.update(lr, beta1, ema); // the production path: Adam and EMA fused
      }
      // The key bias (in_proj_bias[D, 2D)) adds the same q·b_k to every score of a query, which softmax
      // ignores: its gradient is exactly 0 in exact arithmetic, rounding noise (~1e-9) in both frameworks,
      // and Adam turns noise into ±lr steps. So it is checked to be noise, and left out of the comparison.
      const D = fx.meta.config.dModel;
      const gq = f32(fx, 'grad.attn.in_proj_bias');
      const qScale = Math.max(...[...gq.subarray(0, D)].map(Math.abs));
      assert.ok(Math.max(...[...gq.subarray(D, 2 * D)].map(Math.abs)) < 1e-5 * qScale, 'PyTorch key-bias gradient is noise');
      const without = (a: Float32Array, name: string) =>
        name === 'attn.in_proj_bias' ? Float32Array.from([...a.subarray(0, D), ...a.subarray(2 * D)]) : a;
      for (const [k, p] of head.params.list.entries()) {
        const e = scaledMaxDiff(without(p.data, p.name), without(f32(fx, `step${tr.steps}.${p.name}`), p.name));
        assert.ok(e < TOL, `param ${p.name} after ${tr.steps} steps: rel err ${e}`);
        const ee = scaledMaxDiff(without(ema.shadow[k], p.name), without(f32(fx, `ema${tr.steps}.${p.name}`), p.name));
        assert.ok(ee < TOL, `EMA ${p.name}: rel err ${ee}`);
      }
    } finally {
      be.dispose();
    }
  });
}

for (const name of ['head-zsl', 'head-closed']) {
  test(`${name}: inference with a prepared label set reproduces PyTorch's eval logits and attention maps`, () => {
    const fx = load(name);
    const be = new OrtMatmul({ minFlops: 0 });
    try {
      const { head, batch } = build(fx, be);
      const N = fx.meta.config.mode === 'zero-shot' ? batch.queries!.length / fx.meta.config.queryDim : fx.meta.config.numClasses;
      const labels = Array.from({ length: N }, (_, i) => `label${i}`);
      const prepared = head.prepareLabels(labels, batch.queries);
      // maxRows 4 forces several label chunks in zero-shot mode
      const out = head.predict(batch.features, batch.B, batch.T, prepared, { attention: true, maxRows: 4 });
      assert.ok(
        scaledMaxDiff(out.logits, f32(fx, 'out.logits')) < TOL,
        `logits rel err ${scaledMaxDiff(out.logits, f32(fx, 'out.logits'))}`,
      );
      assert.ok(scaledMaxDiff(out.attention!, f32(fx, 'out.attention')) < TOL, 'attention');
    } finally {
      be.dispose();
    }
  });
}
