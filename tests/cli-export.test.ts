// `export-onnx` and `export-web` from the command line (the compiled bin): files written, sizes reported, a
// closed-set head and a missing head refused in one line, exit 2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultHeadConfig } from '../src/head/config.ts';
import { ClipDecoderHead } from '../src/head/head.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import { Rng } from '../src/nn/rng.ts';
import { saveCheckpoint } from '../src/train/checkpoint.ts';

const tmp = mkdtempSync(join(tmpdir(), 'cli-export-'));
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/clip-decoder.js', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('export-onnx writes the bundled head and says its size', () => {
  const out = join(tmp, 'head.onnx');
  const r = cli('export-onnx', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /wrote .*head\.onnx \(\d+\.\d MB, opset 17\)/);
  // the graph holds the inference weights of the bundled checkpoint (float32): all but the CLIP-loss branch's,
  // which are about a quarter of its safetensors file
  const cfg = JSON.parse(readFileSync('models/pico-clip-decoder/config.json', 'utf8')) as { weights: string };
  assert.ok(statSync(out).size > 0.6 * statSync(join('models/pico-clip-decoder', cfg.weights)).size);
});

test('export-onnx refuses a closed-set head and a missing one, in one line each', async () => {
  const head = new ClipDecoderHead(
    defaultHeadConfig({ mode: 'closed-set', inputDim: 8, dModel: 16, heads: 2, ffnDim: 16, numClasses: 3, clipProjDim: 0 }),
    new TsMatmul(),
  );
  head.init(new Rng(1));
  const dir = join(tmp, 'closed');
  await saveCheckpoint(dir, head, { labels: ['a', 'b', 'c'], clipModel: 'x', promptTemplates: [] });
  const closed = cli('export-onnx', '--head', dir, '--out', join(tmp, 'closed.onnx'));
  assert.equal(closed.code, 2);
  assert.match(closed.stderr, /^clip-decoder: cannot export a closed-set head: .*label_embeds/);
  assert.equal(closed.stderr.trim().split('\n').length, 1);
  assert.ok(!existsSync(join(tmp, 'closed.onnx')));
  const missing = cli('export-onnx', '--head', join(tmp, 'nope'), '--out', join(tmp, 'x.onnx'));
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /nope/);
});

test('export-web writes the page with the bundled model and head', () => {
  const out = join(tmp, 'web');
  const r = cli('export-web', out, '--labels', 'dog, sun');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /wrote 15 files to .* \(\d+\.\d MB\)/);
  for (const f of ['index.html', 'app.js', 'lib.js', 'head.onnx', 'vendor/ort-wasm-simd-threaded.wasm', 'model/onnx/vision_model.onnx'])
    assert.ok(existsSync(join(out, f)), f);
  const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
  assert.deepEqual(manifest.defaultLabels, ['dog', 'sun']);
  assert.equal(manifest.vision.dropCls, true);
});
