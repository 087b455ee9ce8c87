import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile, readdir, rm, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Trainer } from '../src/train/trainer.ts';
import { loadCheckpoint, saveCheckpoint, type CheckpointMeta } from '../src/train/checkpoint.ts';
import { defaultHeadConfig } from '../src/head/config.ts';
import { ClipDecoderHead, type TrainBatch } from '../src/head/head.ts';
import { OrtMatmul } from '../src/nn/ort-matmul.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import { Rng } from '../src/nn/rng.ts';
import { ClipDecoderError } from '../src/errors.ts';
import { encodeSafetensors } from '../src/train/safetensors.ts';

const cfg = defaultHeadConfig({ inputDim: 12, queryDim: 8, dModel: 16, heads: 2, ffnDim: 24, clipProjDim: 6, dropout: 0.1 });
const B = 4,
  T = 5,
  N = 6;
const labels = ['cat', 'dog', 'car', 'tree', 'sky', 'boat'];
const meta: CheckpointMeta = {
  labels,
  clipModel: 'test/tiny-clip',
  promptTemplates: ['a photo of {label}'],
  hyperParameters: { lr: 3e-3 },
  metrics: { mAP: 1.5 },
};

/** The batch of a given step: a pure function of the step, as a data loader with a seeded order would be. */
function batchAt(step: number): TrainBatch {
  const r = new Rng(1000 + step);
  return {
    features: Float32Array.from({ length: B * T * cfg.inputDim }, () => r.normal()),
    B,
    T,
    queries: Float32Array.from({ length: N * cfg.queryDim }, () => r.normal()),
    targets: Float32Array.from({ length: B * N }, () => (r.uniform() < 0.3 ? 1 : 0)),
    captions: Float32Array.from({ length: B * cfg.queryDim }, () => r.normal()),
  };
}

const trainerOpts = { seed: 7, maxLr: 3e-3, totalSteps: 8, emaDecay: 0.9, alpha: 0.5, beta: 1 };
const tmp = () => mkdtemp(join(tmpdir(), 'clip-decoder-ckpt-'));

test('a run resumed from a checkpoint ends where the uninterrupted run ends (weights, EMA, Adam moments)', async () => {
  const be = new OrtMatmul();
  const dir = await tmp();
  try {
    const full = Trainer.create(cfg, be, trainerOpts);
    for (let s = 0; s < 6; s++) full.trainStep(batchAt(s));

    const first = Trainer.create(cfg, be, trainerOpts);
    for (let s = 0; s < 3; s++) first.trainStep(batchAt(s));
    await first.save(dir, meta);
    const { trainer: resumed, meta: m2 } = await Trainer.resume(dir, be);
    assert.equal(resumed.step, 3);
    assert.deepEqual(m2.labels, labels);
    for (let s = 3; s < 6; s++) resumed.trainStep(batchAt(s));

    let maxDiff = 0;
    const cmp = (a: Float32Array, b: Float32Array) => {
      for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    };
    full.head.params.list.forEach((p, i) => cmp(p.data, resumed.head.params.list[i].data));
    full.ema!.shadow.forEach((s, i) => cmp(s, resumed.ema!.shadow[i]));
    full.adam.m.forEach((m, i) => cmp(m, resumed.adam.m[i]));
    full.adam.v.forEach((v, i) => cmp(v, resumed.adam.v[i]));
    assert.ok(maxDiff <= 1e-6, `resumed run differs by ${maxDiff}`);
    assert.deepEqual(full.rng.getState(), resumed.rng.getState());
    // and the weights did move (the comparison is not vacuous)
    const init = Trainer.create(cfg, be, trainerOpts);
    assert.ok(
      init.head.params.get('linear1.weight').data.some((x, i) => Math.abs(x - full.head.params.get('linear1.weight').data[i]) > 1e-4),
    );
  } finally {
    be.dispose();
    await rm(dir, { recursive: true, force: true });
  }
});

test('save → load: config.json fields, weights bit-exact, the loaded head predicts the same', async () => {
  const be = new TsMatmul();
  const dir = await tmp();
  try {
    const head = ClipDecoderHead.create(cfg, be, new Rng(3));
    await saveCheckpoint(dir, head, meta);
    const files = await readdir(dir);
    assert.equal(files.filter((f) => f.endsWith('.safetensors')).length, 1);
    const json = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    assert.equal(json.format, 'clip-decoder-head');
    assert.equal(json.formatVersion, 1);
    assert.deepEqual(json.architecture, cfg);
    assert.deepEqual(json.labels, labels);
    assert.equal(json.clipModel, 'test/tiny-clip');
    assert.deepEqual(json.promptTemplates, ['a photo of {label}']);
    assert.deepEqual(json.metrics, { mAP: 1.5 });
    assert.equal(json.training, undefined);
    const { head: h2, meta: m2 } = await loadCheckpoint(dir, be);
    assert.deepEqual(m2.hyperParameters, { lr: 3e-3 });
    head.params.list.forEach((p, i) => assert.deepEqual(h2.params.list[i].data, p.data));
    const b = batchAt(0);
    const p1 = head.predict(b.features, B, T, head.prepareLabels(labels, b.queries));
    const p2 = h2.predict(b.features, B, T, h2.prepareLabels(labels, b.queries));
    assert.deepEqual(p2.logits, p1.logits);
    // resuming from an inference-only checkpoint is refused with a clear message
    await assert.rejects(Trainer.resume(dir, be), /no training state/);
    // a second save replaces the first and removes its data file
    await saveCheckpoint(dir, h2, meta);
    assert.equal((await readdir(dir)).filter((f) => f.endsWith('.safetensors')).length, 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

async function expectInvalid(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError, `not a ClipDecoderError: ${e}`);
    assert.equal(e.code, 'CHECKPOINT_INVALID');
    assert.match(e.message, re);
    return true;
  });
}

test('loading validates format version, architecture vs tensor shapes, stamps, truncation and non-finite weights', async () => {
  const be = new TsMatmul();
  const dir = await tmp(),
    other = await tmp();
  try {
    const head = ClipDecoderHead.create(cfg, be, new Rng(3));
    await saveCheckpoint(dir, head, meta);
    const cfgPath = join(dir, 'config.json');
    const good = await readFile(cfgPath, 'utf8');
    // biome-ignore lint/suspicious/noExplicitAny: edits of a JSON document of any shape
    const edit = async (f: (j: any) => void) => {
      const j = JSON.parse(good);
      f(j);
      await writeFile(cfgPath, JSON.stringify(j));
    };
    await edit((j) => (j.formatVersion = 2));
    await expectInvalid(loadCheckpoint(dir, be), /format version 2.*upgrade/);
    await edit((j) => (j.architecture.ffnDim = 32));
    await expectInvalid(loadCheckpoint(dir, be), /linear1\.weight has shape \[24,16\].*needs \[32,16\]/);
    await edit((j) => (j.labels = []));
    await expectInvalid(loadCheckpoint(dir, be), /labels/);
    await writeFile(cfgPath, '{"format": "clip-decoder-head", ');
    await expectInvalid(loadCheckpoint(dir, be), /not valid JSON/);
    await writeFile(cfgPath, good);
    const weights = JSON.parse(good).weights as string;
    // a weights file from another save, renamed into place
    await saveCheckpoint(other, head, meta);
    const otherWeights = JSON.parse(await readFile(join(other, 'config.json'), 'utf8')).weights;
    const saved = await readFile(join(dir, weights));
    await copyFile(join(other, otherWeights), join(dir, weights));
    await expectInvalid(loadCheckpoint(dir, be), /belongs to another save/);
    // truncated: the digest no longer matches, and the message says why
    await writeFile(join(dir, weights), saved.subarray(0, saved.length - 10));
    await assert.rejects(
      loadCheckpoint(dir, be),
      (e: unknown) =>
        e instanceof ClipDecoderError &&
        e.code === 'CHECKPOINT_CORRUPT' &&
        /outside the .*data section \(truncated file\?\)/.test(e.message),
    );
    // NaN in a weight (in a checkpoint without digests, which would catch it first)
    await edit((j) => delete j.digests);
    const stamp = JSON.parse(good).stamp;
    const bad = head.params.list.map(
      (p) => [p.name, { shape: p.shape, data: Float32Array.from(p.data) }] as [string, { shape: readonly number[]; data: Float32Array }],
    );
    bad[3][1].data[0] = NaN;
    await writeFile(join(dir, weights), encodeSafetensors(bad, { format: 'clip-decoder-head', stamp }));
    await expectInvalid(loadCheckpoint(dir, be, { onWarning: () => {} }), /non-finite/);
    // missing folder
    await assert.rejects(
      loadCheckpoint(join(dir, 'nope'), be),
      (e: unknown) => e instanceof ClipDecoderError && e.code === 'MODEL_NOT_FOUND',
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(other, { recursive: true, force: true });
  }
});

test('kill -9 during repeated saves never leaves an unloadable or mismatched checkpoint', async () => {
  const dir = await tmp();
  const script = join(dir, '..', `saver-${process.pid}.mts`);
  const root = fileURLToPath(new URL('..', import.meta.url));
  // a child that keeps saving checkpoints whose weights all equal the save counter
  await writeFile(
    script,
    `
import { saveCheckpoint } from ${JSON.stringify(join(root, 'src/train/checkpoint.ts'))};
import { ClipDecoderHead } from ${JSON.stringify(join(root, 'src/head/head.ts'))};
import { defaultHeadConfig } from ${JSON.stringify(join(root, 'src/head/config.ts'))};
import { TsMatmul } from ${JSON.stringify(join(root, 'src/nn/matmul.ts'))};
const cfg = defaultHeadConfig({ inputDim: 64, queryDim: 32, dModel: 64, heads: 2, ffnDim: 128, clipProjDim: 16 });
const head = new ClipDecoderHead(cfg, new TsMatmul());
const meta = { labels: ['a', 'b'], clipModel: 'x', promptTemplates: ['{label}'] };
for (let i = 1; ; i++) {
  for (const p of head.params.list) p.data.fill(i);
  await saveCheckpoint(process.argv[2], head, { ...meta, metrics: { i } });
  if (i === 1) process.stdout.write('ready\\n');
}
`,
  );
  try {
    const be = new TsMatmul();
    const seen: number[] = [];
    for (let round = 0; round < 4; round++) {
      const child = spawn(process.execPath, ['--import', 'tsx', script, dir], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        child.stdout.once('data', () => resolve());
        child.once('exit', (c) => reject(new Error(`saver exited early (${c})`)));
      });
      await new Promise((r) => setTimeout(r, 20 + 60 * round));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const { head, meta } = await loadCheckpoint(dir, be);
      const i = (meta.metrics as { i: number }).i;
      seen.push(i);
      for (const p of head.params.list)
        assert.ok(
          p.data.every((x) => x === i),
          `weights of save ${i} are mixed with another save`,
        );
    }
    assert.ok(Math.max(...seen) > 1, `the saver was killed before a second save (${seen})`);
    // files orphaned by a kill (data files, writeFileAtomic temporaries) are swept by the next save
    const { head } = await loadCheckpoint(dir, be);
    await saveCheckpoint(dir, head, { labels: ['a', 'b'], clipModel: 'x', promptTemplates: ['{label}'] });
    const left = (await readdir(dir)).sort();
    assert.equal(left.length, 2, `left: ${left}`);
    assert.equal(left[0], 'config.json');
  } finally {
    await rm(script, { force: true });
    await rm(dir, { recursive: true, force: true });
  }
});

/** Flips `n` bytes of `file` at seeded positions within [from, to). */
async function flipBytes(file: string, n: number, from: number, to: number, seed = 1): Promise<void> {
  const b = await readFile(file);
  const r = new Rng(seed);
  for (let k = 0; k < n; k++) b[from + Math.floor(r.uniform() * (to - from))] ^= 0xff;
  await writeFile(file, b);
}

function dataStart(bytes: Uint8Array): number {
  return 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
}

test('flipped bytes in a checkpoint are refused: CHECKPOINT_CORRUPT naming the file and the tensor (weights and training state)', async () => {
  const be = new TsMatmul();
  const dir = await tmp();
  try {
    const trainer = Trainer.create(cfg, be, trainerOpts);
    trainer.trainStep(batchAt(0));
    await trainer.save(dir, meta);
    const json = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    // the digests are recorded per file and per tensor
    assert.deepEqual(Object.keys(json.digests).sort(), [json.training.state, json.weights].sort());
    assert.equal(Object.keys(json.digests[json.weights].tensors).length, trainer.head.params.list.length);
    assert.match(json.digests[json.weights].tensors['linear1.weight'], /^[0-9a-f]{64}$/);
    const wfile = join(dir, json.weights);
    const clean = await readFile(wfile);
    // 20 flipped bytes inside linear1.weight's data: its offsets come from the file's own header
    const header = JSON.parse(new TextDecoder().decode(clean.subarray(8, dataStart(clean))));
    const [b0, b1] = header['linear1.weight'].data_offsets as [number, number];
    await flipBytes(wfile, 20, dataStart(clean) + b0, dataStart(clean) + b1);
    await assert.rejects(loadCheckpoint(dir, be), (e: unknown) => {
      assert.ok(e instanceof ClipDecoderError);
      assert.equal(e.code, 'CHECKPOINT_CORRUPT');
      assert.equal(e.subject, wfile);
      assert.equal(
        e.message,
        `${wfile} is corrupt: tensor linear1.weight differs from the SHA-256 recorded in config.json; the file changed after it was saved; restore the checkpoint from a copy or train it again`,
      );
      return true;
    });
    await assert.rejects(Trainer.resume(dir, be), (e: unknown) => e instanceof ClipDecoderError && e.code === 'CHECKPOINT_CORRUPT');
    // a flipped byte in the header's padding/metadata: no tensor changed, but the file did
    const hdr = Buffer.from(clean);
    hdr[dataStart(clean) - 1] = 0x09; // the last padding space becomes a tab: still valid JSON
    await writeFile(wfile, hdr);
    await assert.rejects(loadCheckpoint(dir, be), /is corrupt: its header changed/);
    await writeFile(wfile, clean);
    await loadCheckpoint(dir, be); // restored: loads again
    // the training state (Adam moments, EMA) is verified the same way on resume
    const sfile = join(dir, json.training.state);
    const sclean = await readFile(sfile);
    await flipBytes(sfile, 20, dataStart(sclean), sclean.length, 2);
    await loadCheckpoint(dir, be); // inference does not read the training state
    await assert.rejects(
      Trainer.resume(dir, be),
      (e: unknown) =>
        e instanceof ClipDecoderError && e.code === 'CHECKPOINT_CORRUPT' && e.subject === sfile && /tensors? (adam|ema)\./.test(e.message),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a checkpoint saved before digests existed loads with a warning naming it; the bundled head has digests', async () => {
  const be = new TsMatmul();
  const dir = await tmp();
  try {
    const head = ClipDecoderHead.create(cfg, be, new Rng(3));
    await saveCheckpoint(dir, head, meta);
    const cfgPath = join(dir, 'config.json');
    const j = JSON.parse(await readFile(cfgPath, 'utf8'));
    delete j.digests;
    await writeFile(cfgPath, JSON.stringify(j));
    const warnings: string[] = [];
    const { head: h2 } = await loadCheckpoint(dir, be, { onWarning: (m) => warnings.push(m) });
    assert.deepEqual(h2.params.list[0]!.data, head.params.list[0]!.data);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /config\.json records no SHA-256 digests .*tools\/checkpoint-digests\.ts/);
    assert.ok(warnings[0]!.includes(cfgPath));
    const bundled: string[] = [];
    await loadCheckpoint('models/pico-clip-decoder', be, { onWarning: (m) => bundled.push(m) });
    assert.deepEqual(bundled, []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
