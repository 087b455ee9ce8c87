// `extract` and `train`: the feature cache and head training from the command line.
import type { Command } from 'commander';
import { ClipDecoderError } from '../errors.ts';
import type { QuerySource } from '../train/pipeline.ts';
import { readFileSync } from 'node:fs';
import { modelOrDefault, positiveIntFlag } from './options.ts';
import { startProgress } from './progress.ts';

function numberFlag(value: string, flag: string, check: (n: number) => boolean, want: string): number {
  const n = Number(value);
  if (!check(n)) throw new ClipDecoderError('INPUT_INVALID', `${flag} must be ${want}, got "${value}"`, flag);
  return n;
}

interface TrainFlags {
  dataset: string;
  model?: string;
  cache: string;
  out: string;
  epochs: string;
  batchSize: string;
  lr: string;
  weightDecay: string;
  alpha: string;
  beta: string;
  ema: string;
  seed: string;
  views: string;
  queries: string;
  wordvecCorpus?: string;
  template?: string[];
  dModel: string;
  heads: string;
  ffn: string;
  dropout: string;
  resume?: boolean;
  trainOnUnseen?: boolean;
  final?: boolean;
}

export function registerTrainCommands(program: Command): void {
  program
    .command('extract')
    .description('compute CLIP patch tokens and image embeddings of a dataset into the feature cache (resumable)')
    .requiredOption('-d, --dataset <path>', 'dataset folder or label file')
    .requiredOption('-c, --cache <dir>', 'feature cache folder')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled pico-CLIP)')
    .option('--views <n>', 'augmented views per training image besides the plain one', '0')
    .action(async (o: { dataset: string; cache: string; model?: string; views: string }) => {
      const views = numberFlag(o.views, '--views', (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0');
      const [{ loadDataset }, { ClipModel }, { ensureFeatures }] = await Promise.all([
        import('../data/load.ts'),
        import('../clip/model.ts'),
        import('../train/pipeline.ts'),
      ]);
      const dataset = loadDataset(o.dataset);
      const model = await ClipModel.load(modelOrDefault(o.model));
      const progress = startProgress('extracting', dataset.items.length * (1 + views));
      try {
        const s = await ensureFeatures(model, dataset, o.cache, views, (d, t) => progress.update(d, t), (m) => process.stderr.write(`clip-decoder: ${m}\n`));
        progress.stop();
        process.stderr.write(`${s.computed} computed, ${s.skipped} already cached, in ${s.seconds.toFixed(1)} s (${(s.computed / Math.max(s.seconds, 1e-9)).toFixed(1)} images/s)\n`);
      } finally {
        progress.stop();
        await model.dispose();
      }
    });

  program
    .command('train')
    .description('train a CLIP-Decoder head on the seen labels, select on validation, report ZSL/GZSL on test')
    .requiredOption('-d, --dataset <path>', 'dataset folder or label file (with a seen/unseen split)')
    .requiredOption('-c, --cache <dir>', 'feature cache folder (made if absent)')
    .requiredOption('-o, --out <dir>', 'output folder: best/ and last/ checkpoints, logs, curves, test report')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled pico-CLIP)')
    .option('--epochs <n>', 'epochs', '40')
    .option('-b, --batch-size <n>', 'batch size', '56')
    .option('--lr <x>', 'OneCycle peak learning rate', '1e-4')
    .option('--weight-decay <x>', 'coupled L2 on weight matrices', '1e-2')
    .option('--alpha <x>', 'weight of the CLIP loss', '1')
    .option('--beta <x>', 'weight of the ASL', '1')
    .option('--ema <x|auto>', 'EMA decay (auto: 0.9997 or shorter for short runs)', 'auto')
    .option('--seed <n>', 'seed of initialisation, dropout and batch order', '0')
    .option('--views <n>', 'augmented views per training image', '0')
    .option('--queries <clip|wordvec>', 'label queries: CLIP text embeddings or text-only word vectors', 'clip')
    .option('--wordvec-corpus <file>', 'with --queries wordvec: text file (one caption a line) to learn word vectors from')
    .option('-t, --template <template...>', 'prompt template(s) with {label}', ['a photo of {label}'])
    .option('--d-model <n>', 'decoder width D', '768')
    .option('--heads <n>', 'attention heads', '8')
    .option('--ffn <n>', 'feed-forward width', '2048')
    .option('--dropout <x>', 'dropout', '0.1')
    .option('--resume', 'continue from OUT/last if it is there')
    .option('--train-on-unseen', 'upper bound: train with the unseen labels as targets too (not zero-shot)')
    .option('--final', 'train on train + validation with all seen labels for exactly --epochs (no selection)')
    .action(async (o: TrainFlags) => {
      const queries = o.queries as QuerySource;
      if (queries !== 'clip' && queries !== 'wordvec') throw new ClipDecoderError('INPUT_INVALID', `--queries must be clip or wordvec, got "${o.queries}"`, '--queries');
      const epochs = positiveIntFlag(o.epochs, '--epochs');
      const batchSize = positiveIntFlag(o.batchSize, '--batch-size');
      const positive = (n: number) => Number.isFinite(n) && n > 0;
      const nonNegative = (n: number) => Number.isFinite(n) && n >= 0;
      const [{ loadDataset }, { autoEmaDecay, trainOnDataset }] = await Promise.all([import('../data/load.ts'), import('../train/pipeline.ts')]);
      const dataset = loadDataset(o.dataset);
      const steps = epochs * Math.floor(dataset.split.train.length / batchSize);
      const emaDecay = o.ema === 'auto' ? autoEmaDecay(steps) : numberFlag(o.ema, '--ema', (n) => n >= 0 && n < 1, 'in [0, 1) or auto');
      let corpus: string[] | undefined;
      if (o.wordvecCorpus) {
        try {
          corpus = readFileSync(o.wordvecCorpus, 'utf8').split('\n').filter(Boolean);
        } catch (e) {
          throw new ClipDecoderError('INPUT_INVALID', `--wordvec-corpus ${o.wordvecCorpus}: cannot read (${(e as NodeJS.ErrnoException).code ?? e})`, o.wordvecCorpus);
        }
      }
      const progress = startProgress('extracting', dataset.items.length);
      const r = await trainOnDataset({
        dataset,
        model: modelOrDefault(o.model),
        cacheDir: o.cache,
        outDir: o.out,
        queries,
        wordvecCorpus: corpus,
        templates: o.template,
        epochs,
        batchSize,
        seed: numberFlag(o.seed, '--seed', (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0'),
        extraViews: numberFlag(o.views, '--views', (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0'),
        trainer: {
          maxLr: numberFlag(o.lr, '--lr', positive, 'a positive number'),
          weightDecay: numberFlag(o.weightDecay, '--weight-decay', nonNegative, '≥ 0'),
          alpha: numberFlag(o.alpha, '--alpha', nonNegative, '≥ 0'),
          beta: numberFlag(o.beta, '--beta', nonNegative, '≥ 0'),
          emaDecay,
        },
        head: {
          dModel: positiveIntFlag(o.dModel, '--d-model'),
          heads: positiveIntFlag(o.heads, '--heads'),
          ffnDim: positiveIntFlag(o.ffn, '--ffn'),
          dropout: numberFlag(o.dropout, '--dropout', (n) => n >= 0 && n < 1, 'in [0, 1)'),
        },
        resume: o.resume,
        trainOnUnseen: o.trainOnUnseen,
        final: o.final,
        onLog: (line) => {
          progress.stop();
          process.stderr.write(`${line}\n`);
        },
        onExtractProgress: (d, t) => progress.update(d, t),
      });
      progress.stop();
      const row = (name: string, m: typeof r.test.gzsl | null) =>
        m ? `| ${name} | ${m.mAP.toFixed(2)} | ${m.f1['3']?.toFixed(2)} | ${m.f1['5']?.toFixed(2)} | ${m.precision['3']?.toFixed(2)} | ${m.recall['3']?.toFixed(2)} | ${m.precision['5']?.toFixed(2)} | ${m.recall['5']?.toFixed(2)} |` : `| ${name} | – | | | | | | |`;
      process.stdout.write(
        [
          `test split of ${dataset.name}: ${o.final ? 'final run,' : 'best epoch'} ${r.fit.bestEpoch}${o.final ? ' epochs' : ''}, ${r.fit.secondsPerEpoch.toFixed(1)} s/epoch, ${r.seconds.toFixed(0)} s in all`,
          '',
          '| protocol | mAP | F1@3 | F1@5 | P@3 | R@3 | P@5 | R@5 |',
          '|---|---|---|---|---|---|---|---|',
          row('ZSL', r.test.zsl),
          row('GZSL', r.test.gzsl),
          '',
          `checkpoint: ${r.fit.bestDir}   report: ${r.reportDir}`,
          '',
        ].join('\n'),
      );
    });
}
