// npm run experiments [-- --seeds 3 --epochs 4 --alphas 3,30 --model models/pico-clip]
// Regenerates docs/RESULTS.md from scratch: EmojiTags with pico-CLIP features, ZSL and GZSL, mAP / F1@3 / F1@5,
// mean ± std over seeds, for
//   (a) plain CLIP zero-shot (cosine of image and prompt embeddings, no training);
//   (b) ML-Decoder with word vectors learned from caption text alone (no images) as queries, ASL only;
//   (c) ML-Decoder with CLIP text queries, ASL only;
//   (d) CLIP-Decoder: CLIP text queries, ASL + CLIP loss (α chosen on validation);
//   (e) the same head trained with the unseen labels as targets too (upper bound, not zero-shot).
// Every choice (α, the epoch kept) is made on the validation split with pseudo-unseen labels; the test split is
// only ever scored. Work files go to .cache/experiments (resumable: features are cached, finished runs reused).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { availableParallelism, cpus } from 'node:os';
import { buildEmojiTags } from '../src/data/emoji/build.ts';
import { loadDataset } from '../src/data/load.ts';
import { evaluationSet } from '../src/data/types.ts';
import { ClipModel } from '../src/clip/model.ts';
import { evaluateClipZeroShot, trainOnDataset, type TrainRunOptions } from '../src/train/pipeline.ts';
import type { EvalReport, ReportMetrics } from '../src/eval/report.ts';
import { writeFileAtomic } from '../src/util/fs.ts';
import { planCorpus } from './pico-clip/corpus.ts';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '3' },
    epochs: { type: 'string', default: '4' },
    alphas: { type: 'string', default: '3,30' },
    model: { type: 'string', default: 'models/pico-clip' },
    work: { type: 'string', default: '.cache/experiments' },
    out: { type: 'string', default: 'docs/RESULTS.md' },
  },
});
const seeds = Array.from({ length: Number(values.seeds) }, (_, i) => i);
const epochs = Number(values.epochs);
const alphas = values.alphas!.split(',').map(Number);
const work = values.work!;
mkdirSync(work, { recursive: true });
const t0 = performance.now();
const log = (s: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0)} s] ${s}\n`);

// The head scaled to the data: ~5 k training images, 36 tokens × 192 from pico-CLIP. The paper's D = 768 / FFN
// 2048 would be 10× the compute per step for a dataset this small; the ratios (8 heads → 4, FFN = 4D) are kept.
const HEAD = { dModel: 128, heads: 4, ffnDim: 512, dropout: 0.1 };
const BATCH = 56;

const dataDir = join(work, 'emojitags');
if (!existsSync(join(dataDir, 'split.json'))) {
  log('building EmojiTags');
  await buildEmojiTags({ out: dataDir });
}
const dataset = loadDataset(dataDir);
const model = await ClipModel.load(values.model!);
const cacheDir = join(work, `features-${model.id.replace(/[^A-Za-z0-9]+/g, '_').slice(-40)}`);

// The word-vector baseline learns from text alone: the captions of pico-CLIP's pretraining corpus (emoji of the
// train split and icon tags), with no image. Test emoji are not in it.
const corpusCaptions = planCorpus().items.map((it) => [it.name, ...it.keywords, ...it.words, ...it.categories].join(' '));

interface RunSpec {
  key: string;
  name: string;
  over: Partial<TrainRunOptions>;
}

async function runOnce(
  spec: RunSpec,
  seed: number,
  alpha: number,
): Promise<{ test: EvalReport; val: number; bestEpoch: number; secondsPerEpoch: number; seconds: number }> {
  const outDir = join(work, 'runs', `${spec.key}-a${alpha}-s${seed}`);
  const done = join(outDir, 'result.json');
  if (existsSync(done)) {
    const cached = JSON.parse(readFileSync(done, 'utf8'));
    // Runs recorded before bestEpoch was stored: the training log has it.
    cached.bestEpoch ??= JSON.parse(readFileSync(join(outDir, 'training-log.json'), 'utf8')).best.epoch;
    return cached;
  }
  log(`${spec.name}, α = ${alpha}, seed ${seed}`);
  const r = await trainOnDataset({
    dataset,
    model,
    cacheDir,
    outDir,
    epochs,
    batchSize: BATCH,
    seed,
    extraViews: 0,
    head: HEAD,
    trainer: { maxLr: 1e-3, alpha, beta: 1 },
    onLog: (s) => log(`  ${s}`),
    ...spec.over,
  });
  const result = {
    test: r.test,
    val: r.fit.bestScore * 100,
    bestEpoch: r.fit.bestEpoch,
    secondsPerEpoch: r.fit.secondsPerEpoch,
    seconds: r.seconds,
  };
  await writeFileAtomic(done, JSON.stringify(result));
  return result;
}

// (a) plain CLIP: deterministic, no seed.
log('(a) plain CLIP zero-shot');
const plain = await evaluateClipZeroShot({ dataset, model, cacheDir, outDir: join(work, 'runs', 'plain-clip') });

// α for (d), chosen on validation (seed 0).
const clipDecoder: RunSpec = { key: 'clip-decoder', name: '(d) CLIP-Decoder', over: {} };
const alphaScores: { alpha: number; val: number }[] = [];
const alphaRuns: Awaited<ReturnType<typeof runOnce>>[] = [];
for (const alpha of alphas) {
  const r = await runOnce(clipDecoder, 0, alpha);
  alphaRuns.push(r);
  alphaScores.push({ alpha, val: r.val });
}
const bestAlpha = alphaScores.reduce((a, b) => (b.val > a.val ? b : a)).alpha;
log(`α = ${bestAlpha} chosen on validation (${alphaScores.map((a) => `${a.alpha}: ${a.val.toFixed(2)}`).join(', ')})`);

const configs: { spec: RunSpec; alpha: number }[] = [
  {
    spec: {
      key: 'wordvec',
      name: '(b) ML-Decoder, word-vector queries',
      over: { queries: 'wordvec', wordvecCorpus: corpusCaptions, wordvecDim: 128 },
    },
    alpha: 0,
  },
  { spec: { key: 'clip-asl', name: '(c) ML-Decoder, CLIP text queries, ASL', over: {} }, alpha: 0 },
  { spec: clipDecoder, alpha: bestAlpha },
  { spec: { key: 'upper', name: '(e) upper bound: unseen labels trained', over: { trainOnUnseen: true } }, alpha: bestAlpha },
];
const results: { name: string; alpha: number; runs: Awaited<ReturnType<typeof runOnce>>[] }[] = configs.map((c) => ({
  name: c.spec.name,
  alpha: c.alpha,
  runs: [],
}));
// Seed by seed, so that an interrupted experiment has every method at the first seeds (reruns reuse finished runs).
for (const seed of seeds) for (const [i, c] of configs.entries()) results[i]!.runs.push(await runOnce(c.spec, seed, c.alpha));

// ---- the report
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const std = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((s, x) => s + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const cell = (xs: number[]) => (xs.length > 1 ? `${mean(xs).toFixed(2)} ± ${std(xs).toFixed(2)}` : xs[0]!.toFixed(2));
const metric = (reports: EvalReport[], part: 'zsl' | 'gzsl', f: (m: ReportMetrics) => number) => cell(reports.map((r) => f(r[part]!)));
const row = (name: string, reports: EvalReport[]) =>
  `| ${name} | ${metric(reports, 'zsl', (m) => m.mAP)} | ${metric(reports, 'zsl', (m) => m.f1['3']!)} | ${metric(reports, 'zsl', (m) => m.f1['5']!)} | ` +
  `${metric(reports, 'gzsl', (m) => m.mAP)} | ${metric(reports, 'gzsl', (m) => m.f1['3']!)} | ${metric(reports, 'gzsl', (m) => m.f1['5']!)} |`;
const zslMAP = (i: number) => mean(results[i]!.runs.map((r) => r.test.zsl!.mAP));
const gzslMAP = (i: number) => mean(results[i]!.runs.map((r) => r.test.gzsl.mAP));
const order = (a: number, b: number, what: (i: number) => number) => (what(a) > what(b) ? '>' : '≤');
// Every distinct run (the α run reused as (d) seed 0 counts once), whether or not this invocation made it.
const allRuns = [
  ...new Map([...alphaRuns, ...results.flatMap((x) => x.runs)].map((r) => [JSON.stringify([r.val, r.seconds]), r])).values(),
];
const runSeconds = allRuns.reduce((sum, r) => sum + r.seconds, 0);
const minutes = (performance.now() - t0) / 60000;
// Chance level of ZSL mAP: a random ranking's AP is about the label's frequency among the test images.
const testSet = evaluationSet(dataset, 'final');
const unseenCols = testSet.unseen.map((u) => testSet.labels.indexOf(u));
const chance =
  (100 *
    unseenCols.reduce((sum, j) => {
      let pos = 0;
      for (let i = 0; i < testSet.ids.length; i++) pos += testSet.targets[i * testSet.labels.length + j]!;
      return sum + pos / testSet.ids.length;
    }, 0)) /
  unseenCols.length;
const s = dataset.split;
const md = `# Results: CLIP-Decoder on EmojiTags

Generated by \`npm run experiments${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\` (tools/experiments.ts); do not edit by hand.
Every number below comes from that command. Machine: ${cpus()[0]?.model ?? 'CPU'} × ${availableParallelism()} cores, no GPU.

## Setup
- **Data**: EmojiTags (\`clip-decoder data emoji\`, seed ${s.seed ?? 0}): ${dataset.items.length} images of ${new Set(dataset.items.map((i) => i.meta?.emoji ?? i.id)).size} emoji in up to 8 styles;
  ${s.seen.length} seen and ${s.unseen.length} unseen labels; ${s.train.length} train / ${s.val.length} validation / ${s.test.length} test images, split by emoji.
- **Features**: \`${model.id}\` (pico-CLIP), ${model.numTokens} patch tokens × ${model.tokenDim}, embeddings ${model.embedDim}-d, frozen.
- **Head**: D = ${HEAD.dModel}, ${HEAD.heads} heads, FFN ${HEAD.ffnDim}, dropout ${HEAD.dropout}, 1 decoder layer without self-attention
  (the paper's D = 768 / FFN 2048 scaled down to a 5 k-image dataset and a 2-core CPU).
- **Training**: ${epochs} epochs, batch ${BATCH}, Adam + OneCycle (peak lr 1e-3: the paper's 1e-4 is for 40 epochs of NUS-WIDE), weight decay 1e-2,
  EMA decay scaled to the run length (\`autoEmaDecay\`), no augmentation. Trained on the train part with the seen labels minus
  ${s.pseudoUnseen.length} pseudo-unseen ones; the epoch kept is the one with the best validation ZSL mAP on those pseudo-unseen labels.
- **α** (weight of the CLIP loss, ASL weight β = 1) chosen on validation among ${alphas.join(', ')}: ${alphaScores.map((a) => `α = ${a.alpha} → ${a.val.toFixed(2)}`).join('; ')}. Chosen: **α = ${bestAlpha}**.
- **Seeds**: ${seeds.length} (head initialisation, dropout, batch order); (a) has no randomness.
- **Word vectors** for (b): skip-gram on the ${corpusCaptions.length} captions of pico-CLIP's pretraining corpus, text only, 128-d.

## Test split (mean ± std over seeds)

| method | ZSL mAP | ZSL F1@3 | ZSL F1@5 | GZSL mAP | GZSL F1@3 | GZSL F1@5 |
|---|---|---|---|---|---|---|
${row('(a) plain CLIP zero-shot', [plain])}
${results
  .map((r) =>
    row(
      r.name + (r.alpha ? ` (α = ${r.alpha})` : ''),
      r.runs.map((x) => x.test),
    ),
  )
  .join('\n')}

ZSL ranks the ${s.unseen.length} unseen labels; GZSL ranks all ${s.seen.length + s.unseen.length}; all ${s.test.length} test images count
(images without an unseen label stay in, as in BiAM/MKT). Chance ZSL mAP (random ranking) ≈ ${chance.toFixed(2)}.

## What we find
- (d) CLIP-Decoder ${order(2, 1, zslMAP)} (c) ML-Decoder with CLIP queries on ZSL mAP (${zslMAP(2).toFixed(2)} vs ${zslMAP(1).toFixed(2)}), and ${order(2, 1, gzslMAP)} on GZSL mAP (${gzslMAP(2).toFixed(2)} vs ${gzslMAP(1).toFixed(2)}).
- (c) CLIP text queries ${order(1, 0, zslMAP)} (b) word-vector queries on ZSL mAP (${zslMAP(1).toFixed(2)} vs ${zslMAP(0).toFixed(2)}).
- Trained heads vs plain CLIP (${plain.zsl!.mAP.toFixed(2)} ZSL mAP): (d) ${zslMAP(2) > plain.zsl!.mAP ? 'above' : 'not above'}, (c) ${zslMAP(1) > plain.zsl!.mAP ? 'above' : 'not above'}.
- Upper bound (e), with the unseen labels trained: ${zslMAP(3).toFixed(2)} ZSL mAP, the headroom over zero-shot.
The paper expects (d) > (c) > (b) and the trained heads above (a); where a line above says otherwise, that is what we measured.
- Spread: the gap between (d) and (c) is ${(zslMAP(2) - zslMAP(1)).toFixed(2)} ZSL mAP, against a standard deviation over seeds of
  ${std(results[2]!.runs.map((r) => r.test.zsl!.mAP)).toFixed(2)} and ${std(results[1]!.runs.map((r) => r.test.zsl!.mAP)).toFixed(2)}: ${Math.abs(zslMAP(2) - zslMAP(1)) < std(results[2]!.runs.map((r) => r.test.zsl!.mAP)) ? 'within the noise of 3 seeds' : 'larger than the seed noise'}.
- Training length: in ${allRuns.filter((r) => r.bestEpoch === epochs).length} of ${allRuns.length} trained runs the best validation epoch was the last
  one, so the heads were still improving when the ${epochs}-epoch budget ended.${
    zslMAP(3) < plain.zsl!.mAP
      ? ` Even the upper bound (e), trained on the unseen
  labels themselves, stays below plain CLIP: the heads are undertrained at this budget, and they see only ${model.numTokens} patch tokens of a CLIP
  pretrained on these very keyword captions, whose image embedding is already aligned with the label prompts.`
      : ''
  }

## Cost
${results.map((r) => `- ${r.name}: ${mean(r.runs.map((x) => x.secondsPerEpoch)).toFixed(1)} s per epoch, ${mean(r.runs.map((x) => x.seconds)).toFixed(0)} s per run`).join('\n')}
- All ${allRuns.length} training runs: ${(runSeconds / 60).toFixed(1)} min of wall time in all (plus EmojiTags and feature extraction, under a
  minute each); this invocation took ${minutes.toFixed(1)} min, reusing the runs already finished in \`${work}/runs\`.
`;
await writeFileAtomic(values.out!, md);
log(`wrote ${values.out}`);
await model.dispose();
