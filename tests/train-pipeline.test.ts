import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { ClipDecoderError } from '../src/errors.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildEmojiTags } from '../src/data/emoji/build.ts';
import { loadDataset } from '../src/data/load.ts';
import { trainingSet } from '../src/data/types.ts';
import { ClipModel } from '../src/clip/model.ts';
import { loadCheckpoint } from '../src/train/checkpoint.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import {
  autoEmaDecay,
  captionOf,
  trainOnDataset,
  trainingCaptions,
  evaluateClipZeroShot,
  type TrainRunOptions,
} from '../src/train/pipeline.ts';

const root = mkdtempSync(join(tmpdir(), 'pipeline-'));
const dataDir = join(root, 'emojitags');
await buildEmojiTags({ out: dataDir, size: 32, styles: ['noto', 'twemoji'], limit: 40 });
const dataset = loadDataset(dataDir);
const model = await ClipModel.load('tests/fixtures/tiny-clip', { threads: 1 });
const small = { dModel: 32, heads: 4, ffnDim: 64, dropout: 0.1 };

function run(out: string, over: Partial<TrainRunOptions> = {}) {
  return trainOnDataset({
    dataset,
    model,
    cacheDir: join(root, 'cache'),
    outDir: out,
    epochs: 3,
    batchSize: 8,
    seed: 7,
    extraViews: 1,
    trainer: { maxLr: 1e-3, emaDecay: 0.9, alpha: 0.5 },
    head: small,
    ...over,
  });
}

test('captions name only the training labels', () => {
  assert.equal(captionOf(['dog', 'pet', 'animal']), 'a photo of dog, pet and animal');
  assert.equal(captionOf(['dog']), 'a photo of dog');
  const set = trainingSet(dataset, 'select');
  const unseen = new Set([...dataset.split.unseen, ...dataset.split.pseudoUnseen]);
  for (const c of trainingCaptions(set))
    for (const u of unseen) assert.ok(!c.split(/, | and |a photo of /).includes(u), `caption "${c}" names held-out label ${u}`);
});

test('train: features cached, best and last checkpoints, log, curves, and a ZSL/GZSL test report', async () => {
  const out = join(root, 'run');
  const r = await run(out);
  assert.equal(r.fit.epochs.length, 3);
  // Golden values of this seeded run (seed 7, tiny CLIP fixture, 40 emoji in 2 styles, 1 extra view of each training image).
  assert.equal(r.fit.bestEpoch, 1);
  assert.equal(r.extract.computed, 136);
  for (const f of [
    'best/config.json',
    'last/config.json',
    'training-log.json',
    'training-curves.svg',
    'test-report/report.md',
    'test-report/report.json',
  ]) {
    assert.ok(existsSync(join(out, f)), f);
  }
  // mAP ×100 of the same run; the tolerance covers float rounding of other CPUs' GEMM kernels, not a change.
  assert.ok(r.test.zsl && Math.abs(r.test.zsl.mAP - 0.47) <= 0.1, `ZSL mAP ${r.test.zsl?.mAP}`);
  assert.ok(Math.abs(r.test.gzsl.mAP - 2.48) <= 0.1, `GZSL mAP ${r.test.gzsl.mAP}`);
  assert.ok(r.test.gzsl.labels === dataset.split.seen.length + dataset.split.unseen.length);
  // The best checkpoint was trained on seen labels only, minus the pseudo-unseen ones held out for selection.
  const best = await loadCheckpoint(join(out, 'best'), new TsMatmul());
  const trained = new Set(best.meta.labels);
  for (const u of [...dataset.split.unseen, ...dataset.split.pseudoUnseen]) assert.ok(!trained.has(u), u);
  assert.match(readFileSync(join(out, 'training-curves.svg'), 'utf8'), /^<svg/);
  // A second run reuses every cached feature.
  const again = await run(join(root, 'run-again'), { epochs: 1 });
  assert.equal(again.extract.computed, 0);
});

test('a run interrupted after an epoch and resumed ends where an uninterrupted run ends', async () => {
  const whole = await run(join(root, 'whole'));
  const partOut = join(root, 'part');
  await run(partOut, { stopAfterEpochs: 1 });
  const resumed = await run(partOut, { resume: true });
  assert.equal(resumed.fit.epochs.length, 3);
  const a = await loadCheckpoint(join(root, 'whole', 'last'), new TsMatmul());
  const b = await loadCheckpoint(join(partOut, 'last'), new TsMatmul());
  for (const p of a.head.params.list) {
    const q = b.head.params.list.find((x) => x.name === p.name)!;
    let d = 0;
    for (let i = 0; i < p.data.length; i++) d = Math.max(d, Math.abs(p.data[i]! - q.data[i]!));
    assert.ok(d <= 1e-6, `${p.name} differs by ${d}`);
  }
  assert.equal(whole.test.zsl!.mAP, resumed.test.zsl!.mAP);
});

test('word-vector queries, the upper bound and plain CLIP run through the same pipeline', async () => {
  const wv = await run(join(root, 'wv'), { queries: 'wordvec', epochs: 1, trainer: { alpha: 0, emaDecay: 0 } });
  assert.ok(wv.test.zsl);
  const ub = await run(join(root, 'ub'), { trainOnUnseen: true, epochs: 1 });
  const ubLabels = (await loadCheckpoint(join(root, 'ub', 'best'), new TsMatmul())).meta.labels;
  assert.ok(dataset.split.unseen.every((u) => ubLabels.includes(u)));
  assert.ok(ub.test.zsl);
  const zs = await evaluateClipZeroShot({ dataset, model, cacheDir: join(root, 'cache'), outDir: join(root, 'zs') });
  assert.ok(zs.zsl && zs.zsl.mAP > 0);
});

test('a final run trains on train + validation with every seen label and keeps its last epoch', async () => {
  const out = join(root, 'final');
  const r = await run(out, { final: true, epochs: 2 });
  assert.equal(r.fit.bestEpoch, 2);
  const ck = await loadCheckpoint(join(out, 'best'), new TsMatmul());
  assert.deepEqual(ck.meta.labels, dataset.split.seen);
  assert.ok(r.fit.epochs.every((e) => e.val.zslMAP === null));
});

test('EMA decay scales down for short runs', () => {
  assert.equal(autoEmaDecay(1_000_000), 0.9997);
  assert.equal(autoEmaDecay(1000), 0.99);
  assert.equal(autoEmaDecay(5), 0.5);
});

/** The SHA-256 digests config.json records for every tensor: equal digests ⇔ byte-identical tensors. */
function tensorDigests(dir: string): Record<string, string> {
  const j = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { digests: Record<string, { tensors: Record<string, string> }> };
  const out: Record<string, string> = {};
  for (const [file, d] of Object.entries(j.digests)) for (const [t, h] of Object.entries(d.tensors)) out[`${file.split('-')[0]}:${t}`] = h;
  return out;
}

const stepsPerEpoch = Math.floor(trainingSet(dataset, 'select').ids.length / 8);

test('killed mid-epoch (checkpoints every 2 steps), without its training log, a resumed run is bit-for-bit the uninterrupted one', async () => {
  const whole = join(root, 'whole-mid');
  const seen: number[] = [];
  const w = await run(whole, {
    onProgress: (p) => {
      seen.push(p.step);
      assert.ok(Number.isFinite(p.loss) && p.totalSteps === 3 * stepsPerEpoch && p.epochs === 3);
    },
  });
  assert.deepEqual(
    seen,
    Array.from({ length: 3 * stepsPerEpoch }, (_, i) => i + 1),
    'onProgress after every step',
  );
  const part = join(root, 'part-mid');
  // 3 steps into epoch 2 with a save every 2 steps: the last save is at step stepsPerEpoch + 2, step + 3 is lost
  await run(part, { checkpointEverySteps: 2, stopAfterSteps: stepsPerEpoch + 3 });
  const ck = JSON.parse(readFileSync(join(part, 'last', 'config.json'), 'utf8'));
  assert.equal(ck.training.step, stepsPerEpoch + 2);
  rmSync(join(part, 'training-log.json'));
  const resumedLogs: string[] = [];
  const r = await run(part, { resume: true, onLog: (l) => resumedLogs.push(l) });
  assert.ok(resumedLogs.includes(`resuming at step ${ck.training.step} (epoch 1, mid-epoch)`), resumedLogs.join('\n'));
  assert.deepEqual(tensorDigests(join(part, 'last')), tensorDigests(join(whole, 'last')));
  assert.deepEqual(tensorDigests(join(part, 'best')), tensorDigests(join(whole, 'best')));
  assert.deepEqual(
    r.fit.epochs.map((e) => [e.epoch, e.step, e.loss]),
    w.fit.epochs.map((e) => [e.epoch, e.step, e.loss]),
  );
  assert.equal(r.test.zsl!.mAP, w.test.zsl!.mAP);
  // the training log is written again from the checkpoint's record of the run
  assert.equal(JSON.parse(readFileSync(join(part, 'training-log.json'), 'utf8')).epochs.length, 3);
});

test('--resume refuses changed architecture or schedule options, naming them; with nothing to resume it says so and starts', async () => {
  const out = join(root, 'resume-flags');
  await run(out, { stopAfterEpochs: 1 });
  const names = { epochs: '--epochs', 'trainer.maxLr': '--lr', 'head.dModel': '--d-model' };
  await assert.rejects(
    run(out, {
      resume: true,
      epochs: 5,
      trainer: { maxLr: 2e-3, emaDecay: 0.9, alpha: 0.5 },
      head: { ...small, dModel: 64 },
      optionNames: names,
    }),
    (e: unknown) => {
      assert.ok(e instanceof ClipDecoderError);
      assert.equal(e.code, 'RESUME_MISMATCH');
      assert.equal(
        e.message,
        `resume: ${join(out, 'last')} is a run with other settings: --epochs 5 (the run has 3), --lr 0.002 (the run has 0.001), --d-model 64 (the run has 32); drop these to continue it, or train into a new output folder`,
      );
      assert.equal(e.subject, '--epochs');
      return true;
    },
  );
  // options not given take the run's values: nothing differs
  const r = await trainOnDataset({ dataset, model, cacheDir: join(root, 'cache'), outDir: out, resume: true });
  assert.equal(r.fit.epochs.length, 3);
  const logs: string[] = [];
  const fresh = await run(join(root, 'resume-nothing'), { resume: true, epochs: 1, onLog: (l) => logs.push(l) });
  assert.equal(logs[0], `resume: nothing to resume in ${join(root, 'resume-nothing', 'last')} (no checkpoint yet); starting a new run`);
  assert.equal(fresh.fit.epochs.length, 1);
});

test('resuming a checkpoint that predates the run record with a truncated training-log.json is one named error, not a stack trace', async () => {
  const out = join(root, 'log-trunc');
  await run(out, { stopAfterEpochs: 1 });
  const logFile = join(out, 'training-log.json');
  const text = readFileSync(logFile, 'utf8');
  writeFileSync(logFile, text.slice(0, text.length >> 1));
  const cfgFile = join(out, 'last', 'config.json');
  const cfg = JSON.parse(readFileSync(cfgFile, 'utf8'));
  delete cfg.extra.progress; // as saved before the run's progress was kept in the checkpoint
  writeFileSync(cfgFile, JSON.stringify(cfg));
  await assert.rejects(run(out, { resume: true }), (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError && e.code === 'CHECKPOINT_INVALID', String(e));
    assert.match(
      e.message,
      new RegExp(
        `^resume: ${logFile} is unreadable \\(.*JSON.*\\), and ${join(out, 'last')} was saved by an older clip-decoder that kept the run's progress only there; train into a new output folder$`,
      ),
    );
    return true;
  });
});
