// `data emoji` builds the EmojiTags benchmark; `data check` loads any dataset format, validates it and prints
// what it holds. Both only parse flags and call src/data.
import type { Command } from 'commander';
import { ClipDecoderError } from '../errors.ts';
import type { DatasetKind } from '../data/load.ts';
import { positiveIntFlag } from './options.ts';

function intFlag(value: string, flag: string, min = 0): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new ClipDecoderError('INPUT_INVALID', `${flag} must be an integer ≥ ${min}, got "${value}"`, flag);
  return n;
}

const FORMATS: DatasetKind[] = ['auto', 'manifest', 'csv', 'jsonl', 'coco', 'nus-wide'];

export function formatFlag(value: string | undefined): DatasetKind {
  const v = (value ?? 'auto') as DatasetKind;
  if (!FORMATS.includes(v)) throw new ClipDecoderError('INPUT_INVALID', `--format must be one of ${FORMATS.join(', ')}, got "${value}"`, '--format');
  return v;
}

/** --unseen: a file with one label a line, a comma-separated list, or "all". */
export function unseenFlag(value: string | undefined): string | string[] | undefined {
  if (value === undefined || value === 'all') return value;
  return value.includes(',') ? value.split(',').map((s) => s.trim()).filter(Boolean) : value;
}

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description('datasets: build EmojiTags, check dataset files');

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
      const result = await buildEmojiTags({
        out: opts.out,
        size: positiveIntFlag(opts.size, '--size'),
        minPositives: positiveIntFlag(opts.minPositives, '--min-positives'),
        seed: intFlag(opts.seed, '--seed'),
        styles: opts.styles?.split(',').map((s) => s.trim()).filter(Boolean),
        ...(opts.limit !== undefined ? { limit: positiveIntFlag(opts.limit, '--limit') } : {}),
      });
      const s = result.stats;
      const lines = [
        `EmojiTags in ${result.dir} (${result.seconds.toFixed(1)} s; ${result.rendered} rendered, ${result.reused} reused)`,
        `emoji: ${s.emoji.total} (train ${s.emoji.train}, val ${s.emoji.val}, test ${s.emoji.test})`,
        `images: ${s.images.total} (train ${s.images.train}, val ${s.images.val}, test ${s.images.test}); per style: ${Object.entries(s.images.perStyle).map(([k, v]) => `${k} ${v}`).join(', ')}`,
        `labels: ${s.labels.total} (${s.labels.seen} seen, ${s.labels.unseen} unseen: ${s.labels.unseenFromConcepts} NUS-WIDE concepts + ${s.labels.unseenFromSubgroups} Unicode subgroups; ${s.labels.pseudoUnseen} pseudo-unseen for validation), ${s.labels.perEmoji} per emoji`,
        `unseen labels with ≥ 2 test emoji: ${s.labels.unseenWithMinTestPositives}`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
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
    .action(async (path: string, opts: { format?: string; images?: string; split?: string; vocabulary?: string; unseen?: string; allowEmpty?: boolean; checkFiles: boolean }) => {
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
      process.stdout.write(lines.join('\n') + '\n');
    });
}
