// Evaluation reports: scores for a dataset's evaluation images -> the ZSL/GZSL main table, per-label AP and
// plots, written as report.md + report.json + SVGs. Scoring (a model and a head producing a ScoreTable) lives
// elsewhere; this only needs the scores.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { writeFileAtomic } from '../util/fs.ts';
import { evaluationSet } from '../data/types.ts';
import type { Dataset, Stage } from '../data/types.ts';
import { precisionRecallCurve } from './metrics.ts';
import { evaluateProtocol } from './protocol.ts';
import type { LabelResult, ProtocolMetrics, ProtocolOptions } from './protocol.ts';
import type { ScoreTable } from './scores.ts';
import { histogramSvg, prCurvesSvg } from './svg.ts';
import type { Curve } from './svg.ts';

export interface EvalOptions extends ProtocolOptions {
  /** 'final' evaluates on test with the unseen labels; 'select' on val with the pseudo-unseen labels. */
  stage?: Stage;
  /** Curves per panel in the PR plot. */
  curves?: number;
}

/** Metrics in percent, as papers report them. */
export interface ReportMetrics {
  images: number;
  labels: number;
  labelsWithPositives: number;
  mAP: number;
  mAPWithPositives: number;
  /** F1@K, P@K, R@K keyed "3", "5", ... */
  f1: Record<string, number>;
  precision: Record<string, number>;
  recall: Record<string, number>;
}

export interface EvalReport {
  format: 'clip-decoder-eval';
  version: 1;
  dataset: { name: string; format: string; stage: Stage; part: 'test' | 'val'; images: number; seen: number; unseen: number };
  zsl: ReportMetrics | null;
  gzsl: ReportMetrics;
  /** AP in percent, all evaluated labels, best first. */
  perLabel: { label: string; unseen: boolean; ap: number; positives: number }[];
  notes: string[];
  /** PR curve points of the plotted labels (fractions). */
  curves: { best: Curve[]; worst: Curve[]; of: string };
}

const pct = (v: number) => Math.round(v * 1e4) / 1e2;

function toReport(m: ProtocolMetrics): ReportMetrics {
  const f1: Record<string, number> = {};
  const precision: Record<string, number> = {};
  const recall: Record<string, number> = {};
  for (const t of m.topK) {
    f1[t.k] = pct(t.f1);
    precision[t.k] = pct(t.precision);
    recall[t.k] = pct(t.recall);
  }
  return {
    images: m.images,
    labels: m.labels,
    labelsWithPositives: m.labelsWithPositives,
    mAP: pct(m.mAP),
    mAPWithPositives: pct(m.mAPWithPositives),
    f1,
    precision,
    recall,
  };
}

/** Evaluates a score table on a dataset's evaluation part. Rows are matched by id, columns by label name. */
export function evaluateScores(table: ScoreTable, dataset: Dataset, options: EvalOptions = {}): EvalReport {
  const stage = options.stage ?? 'final';
  const evalSet = evaluationSet(dataset, stage);
  const part = stage === 'select' ? 'val' : 'test';
  if (evalSet.ids.length === 0) {
    throw new ClipDecoderError('INPUT_INVALID', `dataset ${dataset.name} has no ${part} images to evaluate`, dataset.name);
  }
  const rowOf = new Map<string, number>();
  table.ids.forEach((id, i) => rowOf.set(id, i));
  const missingIds = evalSet.ids.filter((id) => !rowOf.has(id));
  if (missingIds.length > 0) {
    throw new ClipDecoderError(
      'INPUT_INVALID',
      `the scores lack ${missingIds.length} of the ${evalSet.ids.length} ${part} images, e.g. "${missingIds[0]}": score every ${part} image of the dataset`,
      missingIds[0],
    );
  }
  const colOf = new Map<string, number>();
  table.labels.forEach((l, j) => colOf.set(l, j));
  const missingLabels = evalSet.labels.filter((l) => !colOf.has(l));
  if (missingLabels.length > 0) {
    throw new ClipDecoderError(
      'INPUT_INVALID',
      `the scores lack ${missingLabels.length} of the ${evalSet.labels.length} labels, e.g. "${missingLabels[0]}": score every seen and unseen label`,
      missingLabels[0],
    );
  }
  // Gather the evaluated rows and columns: [N, L] in evaluation order.
  const N = evalSet.ids.length;
  const L = evalSet.labels.length;
  const T = table.labels.length;
  const scores = new Float32Array(N * L);
  const cols = evalSet.labels.map((l) => colOf.get(l)!);
  evalSet.ids.forEach((id, i) => {
    const r = rowOf.get(id)!;
    for (let j = 0; j < L; j++) scores[i * L + j] = table.scores[r * T + cols[j]!]!;
  });
  const input = { scores, labels: evalSet.labels, targets: evalSet.targets, images: N };
  const result = evaluateProtocol(input, evalSet.seen, evalSet.unseen, options);

  const notes = [...dataset.notes];
  const extra = table.ids.length - N;
  if (extra > 0) notes.push(`${extra} scored image(s) are not ${part} images of the dataset and were ignored`);
  if (options.dropImagesWithoutUnseen) notes.push('ZSL counts only images with at least one unseen positive (ML-Decoder style)');
  if (stage === 'select') notes.push('model-selection evaluation: validation images, pseudo-unseen labels as unseen');

  // Curves of the best and worst labels with positives, among the unseen labels when there are any.
  const pool = result.perLabel.filter((p) => p.positives > 0 && (result.zsl ? p.unseen : true));
  const ranked = [...pool].sort((a, b) => b.ap - a.ap || (a.label < b.label ? -1 : 1));
  const k = Math.min(options.curves ?? 5, Math.floor(ranked.length / 2) || ranked.length);
  const curve = (p: LabelResult): Curve => {
    const c = precisionRecallCurve(scores, evalSet.targets, N, L, evalSet.labels.indexOf(p.label));
    return { name: `${p.label} (AP ${pct(p.ap)})`, ...c };
  };
  const best = ranked.slice(0, k).map(curve);
  const worst = ranked
    .slice(ranked.length - k)
    .reverse()
    .map(curve);

  return {
    format: 'clip-decoder-eval',
    version: 1,
    dataset: {
      name: dataset.name,
      format: dataset.format,
      stage,
      part,
      images: N,
      seen: evalSet.seen.length,
      unseen: evalSet.unseen.length,
    },
    zsl: result.zsl ? toReport(result.zsl) : null,
    gzsl: toReport(result.gzsl),
    perLabel: [...result.perLabel]
      .sort((a, b) => b.ap - a.ap || (a.label < b.label ? -1 : 1))
      .map((p) => ({ label: p.label, unseen: p.unseen, ap: pct(p.ap), positives: p.positives })),
    notes,
    curves: { best, worst, of: result.zsl ? 'unseen labels' : 'labels' },
  };
}

/** The one metric table (Markdown): a row per protocol, every metric ×100; the report and `train` print it. */
export function metricsTable(rows: readonly (readonly [string, ReportMetrics | null])[]): string {
  const out = [
    '| protocol | labels | mAP | F1@3 | F1@5 | P@3 | R@3 | P@5 | R@5 | mAP (labels with positives) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const f = (v: number | undefined) => (v === undefined ? 'n/a' : v.toFixed(2));
  for (const [name, m] of rows) {
    if (!m) out.push(`| ${name} | 0 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |`);
    else {
      out.push(
        `| ${name} | ${m.labels} | ${f(m.mAP)} | ${f(m.f1['3'])} | ${f(m.f1['5'])} | ${f(m.precision['3'])} | ${f(m.recall['3'])} | ${f(m.precision['5'])} | ${f(m.recall['5'])} | ${f(m.mAPWithPositives)} (${m.labelsWithPositives}) |`,
      );
    }
  }
  return out.join('\n');
}

function mainTable(r: EvalReport): string {
  return metricsTable([
    ['ZSL (unseen labels)', r.zsl],
    ['GZSL (seen + unseen)', r.gzsl],
  ]);
}

export function reportMarkdown(r: EvalReport): string {
  const d = r.dataset;
  const lines = [
    `# Evaluation: ${d.name}`,
    '',
    `${d.images} ${d.part} images, ${d.seen} seen and ${d.unseen} ${d.stage === 'select' ? 'pseudo-unseen' : 'unseen'} labels (${d.format} dataset, ${d.stage} stage).`,
    'All numbers ×100. mAP: mean of per-label AP (non-interpolated; a label without positives counts 0).',
    'F1/P/R@K: micro-averaged over images, strict top-K (exactly K labels per image, ties by label order).',
    '',
    mainTable(r),
    '',
  ];
  if (r.notes.length > 0) lines.push('Notes:', ...r.notes.map((n) => `- ${n}`), '');
  lines.push('![precision-recall curves](pr-curves.svg)', '', '![AP histogram](ap-histogram.svg)', '');
  lines.push('## Per-label AP', '', '| # | label | unseen | AP | positives |', '|---:|---|:---:|---:|---:|');
  r.perLabel.forEach((p, i) =>
    lines.push(`| ${i + 1} | ${p.label.replace(/\|/g, '\\|')} | ${p.unseen ? '✓' : ''} | ${p.ap.toFixed(2)} | ${p.positives} |`),
  );
  lines.push('');
  return lines.join('\n');
}

export interface WrittenReport {
  markdown: string;
  json: string;
  plots: string[];
}

export async function writeEvalReport(report: EvalReport, outDir: string): Promise<WrittenReport> {
  await mkdir(outDir, { recursive: true });
  const markdown = join(outDir, 'report.md');
  const json = join(outDir, 'report.json');
  const pr = join(outDir, 'pr-curves.svg');
  const hist = join(outDir, 'ap-histogram.svg');
  await writeFileAtomic(markdown, reportMarkdown(report));
  await writeFileAtomic(json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(pr, prCurvesSvg(report.curves.best, report.curves.worst, report.curves.of));
  const series = [
    { name: 'seen', values: report.perLabel.filter((p) => !p.unseen).map((p) => p.ap / 100) },
    {
      name: report.dataset.stage === 'select' ? 'pseudo-unseen' : 'unseen',
      values: report.perLabel.filter((p) => p.unseen).map((p) => p.ap / 100),
    },
  ].filter((s) => s.values.length > 0);
  await writeFileAtomic(hist, histogramSvg(series, 'Distribution of per-label AP', 'AP'));
  return { markdown, json, plots: [pr, hist] };
}

/** The one call the scoring path needs: evaluate a score table on a dataset and write the report. */
export async function evaluateAndWriteReport(
  table: ScoreTable,
  dataset: Dataset,
  outDir: string,
  options: EvalOptions = {},
): Promise<{ report: EvalReport; files: WrittenReport }> {
  const report = evaluateScores(table, dataset, options);
  const files = await writeEvalReport(report, outDir);
  return { report, files };
}
