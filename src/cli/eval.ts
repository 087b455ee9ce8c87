// `eval`: scores (a file) + a dataset -> the ZSL/GZSL report (Markdown, JSON, SVG plots).
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ClipDecoderError } from '../errors.ts';
import type { ReportMetrics } from '../eval/report.ts';
import { formatFlag, unseenFlag } from './data.ts';

function summary(name: string, m: ReportMetrics | null): string {
  if (!m) return `${name}: n/a (no unseen labels)`;
  return `${name}: mAP ${m.mAP.toFixed(2)}  F1@3 ${m.f1['3']?.toFixed(2)}  F1@5 ${m.f1['5']?.toFixed(2)}  P@3 ${m.precision['3']?.toFixed(2)}  R@3 ${m.recall['3']?.toFixed(2)}  P@5 ${m.precision['5']?.toFixed(2)}  R@5 ${m.recall['5']?.toFixed(2)}  (${m.labels} labels, ${m.images} images)`;
}

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('evaluate scores on a dataset (ZSL and GZSL: mAP, F1/P/R@3 and @5) and write a Markdown + JSON report with plots')
    .requiredOption('-s, --scores <file>', 'scores: JSONL lines {"id", "scores": {label: score}} or clip-decoder\'s binary score file')
    .requiredOption('-d, --dataset <path>', 'dataset folder or file (EmojiTags folder, CSV/JSONL labels, COCO JSON, NUS-WIDE folder)')
    .option('-o, --out <dir>', 'report folder (default: report/ beside the scores file)')
    .option('--format <format>', 'dataset format: auto, manifest, csv, jsonl, coco, nus-wide', 'auto')
    .option('--split <file>', 'split file (default: split.json beside the label file)')
    .option('--unseen <labels>', 'unseen labels when no split says: a file, a comma-separated list, or "all"')
    .option('--stage <stage>', '"final": test images, unseen labels; "select": validation images, pseudo-unseen labels', 'final')
    .option('--drop-images-without-unseen', "ZSL on images with an unseen positive only (ML-Decoder's variant; BiAM/MKT keep all)")
    .action(
      async (opts: {
        scores: string;
        dataset: string;
        out?: string;
        format?: string;
        split?: string;
        unseen?: string;
        stage: string;
        dropImagesWithoutUnseen?: boolean;
      }) => {
        if (opts.stage !== 'final' && opts.stage !== 'select') {
          throw new ClipDecoderError('BAD_PARAMETER', `--stage must be "final" or "select", got "${opts.stage}"`, '--stage');
        }
        const [{ loadDataset }, { readScoresFile }, { evaluateAndWriteReport }] = await Promise.all([
          import('../data/load.ts'),
          import('../eval/scores.ts'),
          import('../eval/report.ts'),
        ]);
        const dataset = loadDataset(opts.dataset, {
          format: formatFlag(opts.format),
          split: opts.split,
          unseen: unseenFlag(opts.unseen),
          emptyLabels: 'keep', // evaluation keeps every image; images without labels still take part in ranking
          missingFiles: 'ignore', // scores are given: the images themselves are not needed
        });
        const table = readScoresFile(opts.scores);
        const out = resolve(opts.out ?? join(dirname(resolve(opts.scores)), 'report'));
        const { report, files } = await evaluateAndWriteReport(table, dataset, out, {
          stage: opts.stage,
          dropImagesWithoutUnseen: opts.dropImagesWithoutUnseen,
        });
        process.stdout.write(
          `${[
            summary('ZSL ', report.zsl),
            summary('GZSL', report.gzsl),
            ...report.notes.map((n) => `note: ${n}`),
            `report: ${files.markdown}`,
          ].join('\n')}\n`,
        );
      },
    );
}
