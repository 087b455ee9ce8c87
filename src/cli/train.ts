// `extract` and `train`: the feature cache and head training from the command line.
import type { Command } from 'commander';
import { ClipDecoderError } from '../errors.ts';
import type { QuerySource } from '../train/pipeline.ts';
import { FIT_DEFAULTS, defaultTrainerOptions } from '../train/defaults.ts';
import { defaultHeadConfig } from '../head/config.ts';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { defaultWorkers, validateWorkers } from '../train/parallel.ts';
import { addShardOptions, modelOrDefault, numberFlag, shardFlags } from './options.ts';
import { CACHE_DTYPES, type CacheDtype } from '../features/cache.ts';

/** --cache-dtype: float32 or float16 (undefined: the existing cache's, else float32). */
function cacheDtypeFlag(v: string | undefined): CacheDtype | undefined {
  if (v !== undefined && !CACHE_DTYPES.includes(v as CacheDtype))
    throw new ClipDecoderError('BAD_PARAMETER', `--cache-dtype must be float32 or float16, got "${v}"`, '--cache-dtype');
  return v as CacheDtype | undefined;
}
const CACHE_DTYPE_HELP =
  "store features as float32 or float16 (half the disk; reads give float32) (default: the existing cache's, else float32)";
import { startProgress, startStepProgress } from './progress.ts';
import { DEFAULT_TEMPLATES } from '../clip/prompts.ts';

// Flags the user did not give stay undefined: the library holds the defaults (shown in --help from its
// constants), and --resume takes the run's own values for them.
interface TrainFlags {
  dataset: string;
  model?: string;
  cache: string;
  cacheDtype?: string;
  out: string;
  epochs?: string;
  batchSize?: string;
  lr?: string;
  weightDecay?: string;
  alpha?: string;
  beta?: string;
  ema?: string;
  seed?: string;
  views?: string;
  queries?: string;
  wordvecCorpus?: string;
  template?: string[];
  dModel?: string;
  heads?: string;
  ffn?: string;
  dropout?: string;
  checkpointSteps?: string;
  workers?: string;
  checkpointMinutes?: string;
  resume?: boolean;
  trainOnUnseen?: boolean;
  final?: boolean;
  residual?: boolean;
  labelsPerStep?: string;
  clipTarget?: string;
}

/** Library option → flag, for messages (a refused --resume names the flags). */
const OPTION_FLAGS: Record<string, string> = {
  epochs: '--epochs',
  batchSize: '--batch-size',
  seed: '--seed',
  extraViews: '--views',
  'trainer.maxLr': '--lr',
  'trainer.weightDecay': '--weight-decay',
  'trainer.alpha': '--alpha',
  'trainer.beta': '--beta',
  'trainer.emaDecay': '--ema',
  'head.dModel': '--d-model',
  'head.heads': '--heads',
  'head.ffnDim': '--ffn',
  'head.dropout': '--dropout',
  residual: '--residual',
  labelsPerStep: '--labels-per-step',
};

const given = <T>(v: string | undefined, parse: (v: string) => T): T | undefined => (v === undefined ? undefined : parse(v));

export function registerTrainCommands(program: Command): void {
  const tDef = defaultTrainerOptions({ totalSteps: 1 });
  const hDef = defaultHeadConfig();
  const dflt = (v: unknown) => `(default ${v}; with --resume, the run's)`;
  const extract = program
    .command('extract')
    .description(
      'compute CLIP patch tokens and image embeddings of a dataset into the feature cache (resumable); sharded: CACHE/shard-i-of-n/, then `cache merge CACHE`',
    )
    .requiredOption('-d, --dataset <path>', 'dataset folder or label file')
    .requiredOption('-c, --cache <dir>', 'feature cache folder')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled pico-CLIP)')
    .option('--views <n>', 'augmented views per training image besides the plain one', '0')
    .option('--cache-dtype <float32|float16>', CACHE_DTYPE_HELP);
  addShardOptions(extract).action(
    async (o: {
      dataset: string;
      cache: string;
      model?: string;
      views: string;
      cacheDtype?: string;
      shard?: string;
      shardCount?: string;
    }) => {
      const views = numberFlag(o.views, '--views', 'non-negative-integer');
      const dtype = cacheDtypeFlag(o.cacheDtype);
      const shard = shardFlags(o);
      const [{ loadDataset }, { ClipModel }, { ensureFeatures }] = await Promise.all([
        import('../data/load.ts'),
        import('../clip/model.ts'),
        import('../train/pipeline.ts'),
      ]);
      const dataset = loadDataset(o.dataset);
      const model = await ClipModel.load(modelOrDefault(o.model));
      const progress = startProgress('extracting', dataset.items.length * (1 + views));
      try {
        const s = await ensureFeatures(
          model,
          dataset,
          o.cache,
          views,
          (d, t) => progress.update(d, t),
          (m) => process.stderr.write(`clip-decoder: ${m}\n`),
          { shard, dtype },
        );
        progress.stop();
        const which = shard ? `shard ${shard.index}/${shard.count}: ` : '';
        process.stderr.write(
          `${which}${s.computed} computed${s.changed ? ` (${s.changed} of them because the image changed)` : ''}, ${s.skipped} already cached, in ${s.seconds.toFixed(1)} s (${(s.computed / Math.max(s.seconds, 1e-9)).toFixed(1)} images/s)\n`,
        );
      } finally {
        progress.stop();
        await model.dispose();
      }
    },
  );

  program
    .command('train')
    .description('train a CLIP-Decoder head on the seen labels, select on validation, report ZSL/GZSL on test')
    .requiredOption('-d, --dataset <path>', 'dataset folder or label file (with a seen/unseen split)')
    .requiredOption('-c, --cache <dir>', 'feature cache folder (made if absent)')
    .requiredOption('-o, --out <dir>', 'output folder: best/ and last/ checkpoints, logs, curves, test report')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled pico-CLIP)')
    .option('--cache-dtype <float32|float16>', CACHE_DTYPE_HELP)
    .option('--epochs <n>', `epochs ${dflt(FIT_DEFAULTS.epochs)}`)
    .option('-b, --batch-size <n>', `batch size ${dflt(FIT_DEFAULTS.batchSize)}`)
    .option('--lr <x>', `OneCycle peak learning rate ${dflt(tDef.maxLr)}`)
    .option('--weight-decay <x>', `coupled L2 on weight matrices ${dflt(tDef.weightDecay)}`)
    .option('--alpha <x>', `weight of the CLIP loss ${dflt(tDef.alpha)}`)
    .option('--beta <x>', `weight of the ASL ${dflt(tDef.beta)}`)
    .option('--ema <x|auto>', `EMA decay; auto: 0.9997, or shorter for short runs ${dflt('auto')}`)
    .option('--seed <n>', `seed of initialisation, dropout and batch order ${dflt(FIT_DEFAULTS.seed)}`)
    .option('--views <n>', `augmented views per training image ${dflt(0)}`)
    .option('--queries <clip|wordvec>', 'label queries: CLIP text embeddings or text-only word vectors (default clip)')
    .option('--wordvec-corpus <file>', 'with --queries wordvec: text file (one caption a line) to learn word vectors from')
    .option('-t, --template <template...>', `prompt template(s) with {label} (default ${DEFAULT_TEMPLATES.map((t) => `"${t}"`).join(' ')})`)
    .option('--d-model <n>', `decoder width D ${dflt(hDef.dModel)}`)
    .option('--heads <n>', `attention heads ${dflt(hDef.heads)}`)
    .option('--ffn <n>', `feed-forward width ${dflt(hDef.ffnDim)}`)
    .option('--dropout <x>', `dropout ${dflt(hDef.dropout)}`)
    .option('--checkpoint-steps <n>', 'also save OUT/last every n steps within an epoch (default: by time only)')
    .option(
      '--workers <n>',
      `worker threads for data-parallel steps, 1 … ${availableParallelism()} (default ${defaultWorkers()}); a resume is exact for the same count`,
    )
    .option(
      '--checkpoint-minutes <m>',
      `also save OUT/last every m minutes within an epoch; 0: only at epoch ends (default ${FIT_DEFAULTS.checkpointEveryMinutes})`,
    )
    .option(
      '--resume',
      "continue the run in OUT/last exactly (flags not given take the run's values; differing ones are refused); without a checkpoint there, start a new run and say so",
    )
    .option('--train-on-unseen', 'upper bound: train with the unseen labels as targets too (not zero-shot)')
    .option('--final', 'train on train + validation with all seen labels for exactly --epochs (no selection)')
    .option('--residual', "CLIP-Decoder+: train the head as a correction to CLIP's own score (it starts as plain CLIP)")
    .option('--labels-per-step <n>', 'ASL on this many random seen labels per step (faster with many labels; default all)')
    .option('--clip-target <captions|image>', "CLIP loss towards the seen-label caption (paper) or CLIP's image embedding (distillation)")
    .action(async (o: TrainFlags) => {
      const queries = o.queries as QuerySource | undefined;
      if (o.clipTarget !== undefined && o.clipTarget !== 'captions' && o.clipTarget !== 'image')
        throw new ClipDecoderError('BAD_PARAMETER', `--clip-target must be captions or image, got "${o.clipTarget}"`, '--clip-target');
      if (queries !== undefined && queries !== 'clip' && queries !== 'wordvec')
        throw new ClipDecoderError('BAD_PARAMETER', `--queries must be clip or wordvec, got "${o.queries}"`, '--queries');
      const [{ loadDataset }, { trainOnDataset }] = await Promise.all([import('../data/load.ts'), import('../train/pipeline.ts')]);
      const dataset = loadDataset(o.dataset);
      const emaDecay = o.ema === undefined || o.ema === 'auto' ? undefined : numberFlag(o.ema, '--ema', 'fraction');
      let corpus: string[] | undefined;
      if (o.wordvecCorpus) {
        try {
          corpus = readFileSync(o.wordvecCorpus, 'utf8').split('\n').filter(Boolean);
        } catch (e) {
          throw new ClipDecoderError(
            'BAD_PARAMETER',
            `--wordvec-corpus ${o.wordvecCorpus}: cannot read (${(e as NodeJS.ErrnoException).code ?? e})`,
            o.wordvecCorpus,
          );
        }
      }
      const progress = startProgress('extracting', dataset.items.length);
      const bar = startStepProgress('training');
      const r = await trainOnDataset({
        dataset,
        model: modelOrDefault(o.model),
        cacheDir: o.cache,
        cacheDtype: cacheDtypeFlag(o.cacheDtype),
        outDir: o.out,
        queries,
        wordvecCorpus: corpus,
        templates: o.template,
        epochs: given(o.epochs, (v) => numberFlag(v, '--epochs', 'positive-integer')),
        batchSize: given(o.batchSize, (v) => numberFlag(v, '--batch-size', 'positive-integer')),
        seed: given(o.seed, (v) => numberFlag(v, '--seed', 'non-negative-integer')),
        extraViews: given(o.views, (v) => numberFlag(v, '--views', 'non-negative-integer')),
        trainer: {
          maxLr: given(o.lr, (v) => numberFlag(v, '--lr', 'positive')),
          weightDecay: given(o.weightDecay, (v) => numberFlag(v, '--weight-decay', 'non-negative')),
          alpha: given(o.alpha, (v) => numberFlag(v, '--alpha', 'non-negative')),
          beta: given(o.beta, (v) => numberFlag(v, '--beta', 'non-negative')),
          emaDecay,
        },
        head: {
          dModel: given(o.dModel, (v) => numberFlag(v, '--d-model', 'positive-integer')),
          heads: given(o.heads, (v) => numberFlag(v, '--heads', 'positive-integer')),
          ffnDim: given(o.ffn, (v) => numberFlag(v, '--ffn', 'positive-integer')),
          dropout: given(o.dropout, (v) => numberFlag(v, '--dropout', 'fraction')),
        },
        checkpointEverySteps: given(o.checkpointSteps, (v) => numberFlag(v, '--checkpoint-steps', 'positive-integer')),
        checkpointEveryMinutes: given(o.checkpointMinutes, (v) => numberFlag(v, '--checkpoint-minutes', 'non-negative')),
        workers:
          o.workers === undefined
            ? defaultWorkers()
            : validateWorkers(/^[0-9]+$/.test(o.workers) ? Number(o.workers) : o.workers, '--workers'),
        optionNames: OPTION_FLAGS,
        resume: o.resume,
        trainOnUnseen: o.trainOnUnseen,
        final: o.final,
        residual: o.residual,
        labelsPerStep: given(o.labelsPerStep, (v) => numberFlag(v, '--labels-per-step', 'positive-integer')),
        clipTarget: o.clipTarget as 'captions' | 'image' | undefined,
        onLog: (line) => {
          progress.stop();
          bar.log(line);
        },
        onExtractProgress: (d, t) => progress.update(d, t),
        onProgress: (p) => bar.update(p),
      }).finally(() => {
        progress.stop();
        bar.stop();
      });
      const { metricsTable } = await import('../eval/report.ts');
      process.stdout.write(
        [
          `test split of ${dataset.name}: ${o.final ? 'final run,' : 'best epoch'} ${r.fit.bestEpoch}${o.final ? ' epochs' : ''}, ${r.fit.secondsPerEpoch.toFixed(1)} s/epoch, ${r.seconds.toFixed(0)} s in all`,
          '',
          metricsTable([
            ['ZSL', r.test.zsl],
            ['GZSL', r.test.gzsl],
          ]),
          '',
          `checkpoint: ${r.fit.bestDir}   report: ${r.reportDir}`,
          '',
        ].join('\n'),
      );
    });
}
