// The exported head graph (src/head/export-onnx.ts) against the TypeScript predict: the bundled head and a
// tiny random one, in onnxruntime-node, logits and attention within 1e-5 relative; Debian's python3-onnx
// checker accepts the file; closed-set heads are refused with the reason named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { defaultHeadConfig } from '../src/head/config.ts';
import { HEAD_ONNX, exportHeadOnnx, headToOnnx } from '../src/head/export-onnx.ts';
import { ClipDecoderHead } from '../src/head/head.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import { OrtMatmul } from '../src/nn/ort-matmul.ts';
import { Rng } from '../src/nn/rng.ts';
import { loadCheckpoint } from '../src/train/checkpoint.ts';
import { DEFAULT_HEAD } from '../src/tagger/defaults.ts';

const tmp = mkdtempSync(join(tmpdir(), 'head-onnx-'));

function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

/** max |got − want| / max |want|: the engine's relative measure (docs/engine.md). */
function relErr(got: Float32Array, want: Float32Array): number {
  let d = 0,
    m = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i]! - want[i]!));
    m = Math.max(m, Math.abs(want[i]!));
  }
  return d / m;
}

async function compare(head: ClipDecoderHead, bytes: Uint8Array, B: number, T: number, N: number, seed: number) {
  const { inputDim: C, queryDim: E } = head.config;
  const rng = new Rng(seed);
  const features = randn(rng, B * T * C);
  const queries = randn(rng, N * E, 0.1);
  const labels = Array.from({ length: N }, (_, i) => `l${i}`);
  const want = head.predict(features, B, T, head.prepareLabels(labels, queries), { attention: true });
  const session = await ort.InferenceSession.create(bytes);
  const r = await session.run({
    [HEAD_ONNX.inputs.tokens]: new ort.Tensor('float32', features, [B, T, C]),
    [HEAD_ONNX.inputs.queries]: new ort.Tensor('float32', queries, [N, E]),
  });
  await session.release();
  const out = (name: string) => r[name]!.data as Float32Array;
  assert.deepEqual(r[HEAD_ONNX.outputs.logits]!.dims, [B, N]);
  assert.deepEqual(r[HEAD_ONNX.outputs.attention]!.dims, [B, N, T]);
  const probs = Float32Array.from(want.logits, (z) => 1 / (1 + Math.exp(-z)));
  return {
    logits: relErr(out(HEAD_ONNX.outputs.logits), want.logits),
    attention: relErr(out(HEAD_ONNX.outputs.attention), want.attention!),
    probabilities: relErr(out(HEAD_ONNX.outputs.probabilities), probs),
  };
}

test('the bundled head: ONNX Runtime on the exported graph equals predict within 1e-5 relative', async () => {
  const out = join(tmp, 'bundled.onnx');
  const { bytes } = await exportHeadOnnx({ head: DEFAULT_HEAD, out });
  assert.equal(statSync(out).size, bytes);
  const { head } = await loadCheckpoint(DEFAULT_HEAD, new OrtMatmul({ threads: 1 }));
  // two label-set sizes and batch sizes: the graph's dims are symbolic
  for (const [B, N, seed] of [
    [1, 5, 1],
    [3, 40, 2],
  ] as const) {
    const e = await compare(head, readFileSync(out), B, 16, N, seed);
    console.log(`bundled head B=${B} N=${N}: rel err logits ${e.logits.toExponential(2)}, attention ${e.attention.toExponential(2)}`);
    for (const [k, v] of Object.entries(e)) assert.ok(v <= 1e-5, `${k}: ${v}`);
  }
  const session = await ort.InferenceSession.create(out);
  assert.deepEqual([...session.inputNames], ['patch_tokens', 'label_embeds']);
  assert.deepEqual([...session.outputNames], ['logits', 'probabilities', 'attention']);
  await session.release();
});

test('a random head at the official shape ratios (TS backend), without the attention output', async () => {
  const cfg = defaultHeadConfig({ inputDim: 48, queryDim: 24, dModel: 64, heads: 8, ffnDim: 96, clipProjDim: 0 });
  const head = new ClipDecoderHead(cfg, new TsMatmul());
  head.init(new Rng(7));
  // perturb the constant-initialised parameters so that they matter
  const rng = new Rng(8);
  for (const p of [head.norm1, head.norm2, head.norm3]) {
    p.weight.data.set(randn(rng, p.weight.data.length, 0.2).map((v) => 1 + v));
    p.bias.data.set(randn(rng, p.bias.data.length, 0.2));
  }
  head.fc.bias.data[0] = 0.3;
  head.version++;
  const e = await compare(head, headToOnnx(head), 2, 9, 7, 3);
  for (const [k, v] of Object.entries(e)) assert.ok(v <= 1e-5, `${k}: ${v}`);
  const lean = await ort.InferenceSession.create(headToOnnx(head, { attention: false }));
  assert.deepEqual([...lean.outputNames], ['logits', 'probabilities']);
  await lean.release();
});

test('python3-onnx: onnx.checker.check_model (full_check, with shape inference) accepts the exported head', async () => {
  const out = join(tmp, 'checked.onnx');
  await exportHeadOnnx({ head: DEFAULT_HEAD, out });
  const script = [
    'import sys',
    'try:',
    '    import onnx',
    'except ImportError:',
    '    sys.exit("MISSING python3-onnx")',
    'm = onnx.load(sys.argv[1])',
    'onnx.checker.check_model(m, full_check=True)',
    'print("ok", onnx.__version__, [(o.domain or "ai.onnx", o.version) for o in m.opset_import], sorted({n.op_type for n in m.graph.node}))',
  ].join('\n');
  const r = spawnSync('/usr/bin/python3', ['-c', script, out], { encoding: 'utf8' });
  if (r.error || /MISSING/.test(r.stderr))
    assert.fail('Debian python3-onnx is needed for this check: apt-get install python3-onnx (.ci/run installs it)');
  assert.equal(r.status, 0, r.stderr);
  console.log(r.stdout.trim());
  assert.match(r.stdout, /^ok .*\('ai\.onnx', 17\)/);
});

test('a closed-set head is refused, the reason named', () => {
  const cfg = defaultHeadConfig({ mode: 'closed-set', inputDim: 8, dModel: 16, heads: 2, ffnDim: 16, numClasses: 5, clipProjDim: 0 });
  const head = new ClipDecoderHead(cfg, new TsMatmul());
  assert.throws(
    () => headToOnnx(head),
    (e: Error & { code?: string }) =>
      e.code === 'EXPORT_UNSUPPORTED' && /closed-set head/.test(e.message) && /label_embeds/.test(e.message),
  );
});
