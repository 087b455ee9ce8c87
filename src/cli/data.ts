// `data emoji` builds the EmojiTags benchmark, `data scenes` EmojiScenes; `data check` loads any dataset format,
// validates it and prints what it holds. All only parse flags and call src/data.
import type { Command } from 'commander';
import { ClipDecoderError } from '../errors.ts';
import { SCENES_DEFAULTS } from '../data/emoji/scene-defaults.ts';
import type { EmojiScenesStats } from '../data/emoji/scenes.ts';
import type { DatasetKind } from '../data/load.ts';
import { numberFlag, optionalNumberFlag } from './options.ts';
import { startLazyProgress } from './progress.ts';

/** The summary `data scenes` prints: sizes, then per unseen label its P captions and test positives. */
export function scenesSummary(s: EmojiScenesStats, seconds: number, rendered: number, reused: number, dir: string): string {
  const sc = s.scenes;
  const row = (name: string, d: EmojiScenesStats['scenes']['train']) =>
    `  ${name}: ${d.scenes} scenes, ${d.objectsPerScene} objects per scene (1/2/3/4: ${[1, 2, 3, 4].map((k) => d.objects[k]).join('/')}), ${d.labelsPerImage} labels per image`;
  return [
    `EmojiScenes in ${dir} (${seconds.toFixed(1)} s; ${rendered} images rendered, ${reused} reused)`,
    `pools: P ${s.pools.pretrainEmoji} emoji (${s.pools.pretrainFamilies} families), B ${s.pools.benchmarkEmoji} emoji (${s.pools.benchmarkFamilies} families); B emoji train ${s.emoji.train}, val ${s.emoji.val}, test ${s.emoji.test}`,
    `styles: train/val/P ${s.styles.train.join(', ')}; test only: ${s.styles.testOnly}`,
    row('train', sc.train),
    row('val', sc.val),
    row('test', sc.test),
    row(`test, ${s.styles.testOnly} only`, sc.styleTransfer),
    row('P (pretrain-scenes.jsonl)', sc.pretrain),
    `single-emoji subset (single/): train ${s.singles.train}, val ${s.singles.val}, test ${s.singles.test} images`,
    `labels: ${s.labels.total} (${s.labels.seen} seen, ${s.labels.unseen} unseen: ${s.labels.unseenFromConcepts} NUS-WIDE concepts + ${s.labels.unseenFromSubgroups} subgroups; ${s.labels.pseudoUnseen} pseudo-unseen)`,
    'unseen label: P captions (P emoji) / test scene positives / style-transfer positives',
    ...s.unseen.map(
      (u) => `  ${u.label}${u.source === 'subgroup' ? '*' : ''}: ${u.pCaptions} (${u.pEmoji}) / ${u.testScenes} / ${u.styleScenes}`,
    ),
  ].join('\n');
}

const FORMATS: DatasetKind[] = ['auto', 'manifest', 'csv', 'jsonl', 'coco', 'nus-wide'];

export function formatFlag(value: string | undefined): DatasetKind {
  const v = (value ?? 'auto') as DatasetKind;
  if (!FORMATS.includes(v))
    throw new ClipDecoderError('BAD_PARAMETER', `--format must be one of ${FORMATS.join(', ')}, got "${value}"`, '--format');
  return v;
}

/** --unseen: a file with one label a line, a comma-separated list, or "all". */
export function unseenFlag(value: string | undefined): string | string[] | undefined {
  if (value === undefined || value === 'all') return value;
  return value.includes(',')
    ? value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : value;
}

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description('datasets: build EmojiTags or EmojiScenes, check dataset files');

  data
    .command('emoji')
    .description('build EmojiTags, the zero-shot multi-label emoji benchmark, from the installed npm emoji packages')
    .requiredOption('-o, --out <dir>', 'output folder (renders there are reused on a rerun)')
    .option('--size <px>', 'render size in pixels', '224')
    .option('--min-positives <n>', 'keep labels with at least this many positive emoji', '8')
    .option('--seed <n>', 'seed of the split', '0')
    .option('--styles <names>', 'comma-separated styles to render (default: all; labels and split do not depend on it)')
    .option('--limit <n>', 'only this many emoji (spread over train/val/test), for a quick build')
    .action(async (opts: { out: string; size: string; minPositives: string; seed: string; styles?: string; limit?: string }) => {
      const { buildEmojiTags } = await import('../data/emoji/build.ts');
      const bar = startLazyProgress('EmojiTags');
      const result = await buildEmojiTags({
        onProgress: bar.update,
        out: opts.out,
        size: numberFlag(opts.size, '--size', 'positive-integer'),
        minPositives: numberFlag(opts.minPositives, '--min-positives', 'positive-integer'),
        seed: numberFlag(opts.seed, '--seed', 'non-negative-integer'),
        styles: opts.styles
          ?.split(',')
          .map((s) => s.trim())
          .filter(Boolean),
        ...(opts.limit !== undefined ? { limit: numberFlag(opts.limit, '--limit', 'positive-integer') } : {}),
      }).finally(bar.stop);
      const s = result.stats;
      const lines = [
        `EmojiTags in ${result.dir} (${result.seconds.toFixed(1)} s; ${result.rendered} rendered, ${result.reused} reused)`,
        `emoji: ${s.emoji.total} (train ${s.emoji.train}, val ${s.emoji.val}, test ${s.emoji.test})`,
        `images: ${s.images.total} (train ${s.images.train}, val ${s.images.val}, test ${s.images.test}); per style: ${Object.entries(
          s.images.perStyle,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
        `labels: ${s.labels.total} (${s.labels.seen} seen, ${s.labels.unseen} unseen: ${s.labels.unseenFromConcepts} NUS-WIDE concepts + ${s.labels.unseenFromSubgroups} Unicode subgroups; ${s.labels.pseudoUnseen} pseudo-unseen for validation), ${s.labels.perEmoji} per emoji`,
        `unseen labels with ≥ 2 test emoji: ${s.labels.unseenWithMinTestPositives}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  data
    .command('scenes')
    .description(
      'build EmojiScenes: P/B concept pools, multi-emoji scenes of B (train/val/test, one style only in test), single-emoji B subset, P scenes with captions',
    )
    .requiredOption('-o, --out <dir>', 'output folder (a rerun of the same build reuses its images; another build there is refused)')
    .option('--size <px>', 'scene side in pixels', String(SCENES_DEFAULTS.size))
    .option('--seed <n>', 'seed of pools, split and scenes', String(SCENES_DEFAULTS.seed))
    .option('--train-scenes <n>', 'train scenes', String(SCENES_DEFAULTS.trainScenes))
    .option('--val-scenes <n>', 'validation scenes', String(SCENES_DEFAULTS.valScenes))
    .option('--test-scenes <n>', 'test scenes in the training styles', String(SCENES_DEFAULTS.testScenes))
    .option('--style-scenes <n>', 'test scenes drawn in the test-only style', String(SCENES_DEFAULTS.styleScenes))
    .option('--pretrain-scenes <n>', 'scenes of P emoji with captions (pretrain-scenes.jsonl)', String(SCENES_DEFAULTS.pretrainScenes))
    .option('--test-style <name>', 'the style only test scenes use', SCENES_DEFAULTS.testStyle)
    .option('--benchmark-fraction <f>', 'share of concept families in the benchmark pool B', String(SCENES_DEFAULTS.benchmarkFraction))
    .option('--min-teach <n>', 'P captions each unseen label needs', String(SCENES_DEFAULTS.minTeach))
    .option('--min-positives <n>', 'keep labels with at least this many positive emoji', String(SCENES_DEFAULTS.minPositives))
    .option('--min-unseen <n>', 'wanted unseen labels with 2 test families', String(SCENES_DEFAULTS.minUnseen))
    .option('--max-overlap <f>', 'largest overlap of two objects, as a share of the smaller', String(SCENES_DEFAULTS.maxOverlap))
    .option('--single-styles <names>', 'comma-separated styles of the single-emoji subset (default: all)')
    .option('--force', 'replace a different build in the output folder')
    .action(async (o: Record<string, string | boolean | undefined>) => {
      // Ranges are checked by the builder, which names the flag too.
      const n = (k: string, flag: string) => optionalNumberFlag(o[k] as string | undefined, flag);
      const { buildEmojiScenes } = await import('../data/emoji/scenes.ts');
      const bar = startLazyProgress('EmojiScenes');
      const result = await buildEmojiScenes({
        onProgress: bar.update,
        out: String(o.out),
        size: n('size', '--size'),
        seed: n('seed', '--seed'),
        trainScenes: n('trainScenes', '--train-scenes'),
        valScenes: n('valScenes', '--val-scenes'),
        testScenes: n('testScenes', '--test-scenes'),
        styleScenes: n('styleScenes', '--style-scenes'),
        pretrainScenes: n('pretrainScenes', '--pretrain-scenes'),
        testStyle: o.testStyle as string,
        benchmarkFraction: n('benchmarkFraction', '--benchmark-fraction'),
        minTeach: n('minTeach', '--min-teach'),
        minPositives: n('minPositives', '--min-positives'),
        minUnseen: n('minUnseen', '--min-unseen'),
        maxOverlap: n('maxOverlap', '--max-overlap'),
        singleStyles:
          typeof o.singleStyles === 'string'
            ? o.singleStyles
                .split(',')
                .map((x) => x.trim())
                .filter(Boolean)
            : undefined,
        force: Boolean(o.force),
      }).finally(bar.stop);
      process.stdout.write(`${scenesSummary(result.stats, result.seconds, result.rendered, result.reused, result.dir)}\n`);
    });

  data
    .command('check')
    .description('load a dataset (folder, CSV/JSONL label file, COCO JSON or NUS-WIDE folder), validate it and summarise it')
    .argument('<path>', 'dataset folder or file')
    .option('--format <format>', `one of ${FORMATS.join(', ')}`, 'auto')
    .option('--images <dir>', 'image folder (default: depends on the format)')
    .option('--split <file>', 'split file (default: split.json beside the label file)')
    .option('--vocabulary <file>', 'label vocabulary, one a line (default: labels.txt beside the label file)')
    .option('--unseen <labels>', 'unseen labels when no split says: a file, a comma-separated list, or "all"')
    .option('--allow-empty', 'keep images without labels instead of failing')
    .option('--no-check-files', 'do not check that image files exist')
    .action(
      async (
        path: string,
        opts: {
          format?: string;
          images?: string;
          split?: string;
          vocabulary?: string;
          unseen?: string;
          allowEmpty?: boolean;
          checkFiles: boolean;
        },
      ) => {
        const { loadDataset } = await import('../data/load.ts');
        const d = loadDataset(path, {
          format: formatFlag(opts.format),
          imagesDir: opts.images,
          split: opts.split,
          vocabulary: opts.vocabulary,
          unseen: unseenFlag(opts.unseen),
          emptyLabels: opts.allowEmpty ? 'keep' : undefined,
          missingFiles: opts.checkFiles ? 'error' : 'ignore',
        });
        let positives = 0;
        for (const it of d.items) positives += it.labels.length;
        const lines = [
          `${d.name} (${d.format}): ${d.items.length} images, ${d.labels.length} labels, ${(positives / Math.max(1, d.items.length)).toFixed(2)} labels per image`,
          `split: train ${d.split.train.length}, val ${d.split.val.length}, test ${d.split.test.length}; seen ${d.split.seen.length}, unseen ${d.split.unseen.length}, pseudo-unseen ${d.split.pseudoUnseen.length}`,
          ...d.notes.map((n) => `note: ${n}`),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      },
    );
}
