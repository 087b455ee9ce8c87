// `tag`: independent label probabilities for images, as a table, JSON lines or CSV; attention overlays with
// --explain.
import type { Command } from 'commander';
import { readFileSync, mkdirSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import type { Tagger, TagResult } from '../tagger/tagger.ts';
import { expandImageInputs } from '../util/images.ts';
import { writeFileAtomic } from '../util/fs.ts';
import { positiveIntFlag } from './options.ts';
import { startProgress } from './progress.ts';

interface TagFlags {
  labels?: string;
  labelsFile?: string;
  model?: string;
  head?: string;
  dtype?: string;
  top?: string;
  threshold?: string;
  format?: string;
  explain?: string;
  batchSize: string;
}

/** Labels from --labels (comma-separated) and/or --labels-file (one per line, # comments). */
export function readLabelFlags(labels: string | undefined, labelsFile: string | undefined): string[] {
  const out: string[] = [];
  if (labels !== undefined) out.push(...labels.split(',').map((l) => l.trim()).filter(Boolean));
  if (labelsFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(labelsFile, 'utf8');
    } catch (e) {
      throw new ClipDecoderError('INPUT_INVALID', `--labels-file ${labelsFile}: cannot read (${(e as NodeJS.ErrnoException).code ?? e})`, labelsFile);
    }
    out.push(...text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean));
  }
  if (out.length === 0) throw new ClipDecoderError('INPUT_INVALID', 'no labels: give --labels a,b,c or --labels-file FILE', '--labels');
  return out;
}

function csvCell(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
}

export function registerTagCommand(program: Command): void {
  program
    .command('tag')
    .description('independent probability of each label for each image (any labels: open vocabulary)')
    .argument('<paths...>', 'image files or folders (walked recursively)')
    .option('-l, --labels <a,b,c>', 'comma-separated labels')
    .option('--labels-file <file>', 'labels, one per line')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled pico-CLIP)')
    .option('--head <dir|none>', 'CLIP-Decoder head checkpoint (default: the bundled head); "none": the model\'s own zero-shot score, sigmoid(s·cos + b)')
    .option('--dtype <fp32|fp16|q8|...>', 'ONNX weights of the model folder: fp32 (default) or its _fp16 / _quantized (q8) / ... variant')
    .option('-k, --top <K>', 'keep the K most probable labels per image')
    .option('-p, --threshold <p>', 'keep labels with probability ≥ p')
    .option('-f, --format <table|jsonl|csv>', 'output format (default: table on a terminal, else jsonl)')
    .option('--explain <dir>', 'write an attention overlay PNG per image and kept label into DIR')
    .option('-b, --batch-size <n>', 'images per ONNX run', '16')
    .action(async (paths: string[], flags: TagFlags) => {
      const labels = readLabelFlags(flags.labels, flags.labelsFile);
      const top = flags.top !== undefined ? positiveIntFlag(flags.top, '--top') : undefined;
      let threshold: number | undefined;
      if (flags.threshold !== undefined) {
        threshold = Number(flags.threshold);
        if (!(threshold >= 0 && threshold <= 1)) throw new ClipDecoderError('INPUT_INVALID', `--threshold must be a probability in [0, 1], got "${flags.threshold}"`, '--threshold');
      }
      const format = flags.format ?? (process.stdout.isTTY ? 'table' : 'jsonl');
      if (!['table', 'jsonl', 'csv'].includes(format)) throw new ClipDecoderError('INPUT_INVALID', `--format must be table, jsonl or csv, got "${format}"`, '--format');
      const batchSize = positiveIntFlag(flags.batchSize, '--batch-size');
      const { files, missing } = expandImageInputs(paths);
      for (const m of missing) process.stderr.write(`clip-decoder: ${m.path}: ${m.reason}\n`);
      let failures = missing.length;
      if (flags.explain) mkdirSync(flags.explain, { recursive: true });

      const [{ Tagger }, { parseDtype }] = await Promise.all([import('../tagger/tagger.ts'), import('../clip/family.ts')]);
      const dtype = flags.dtype !== undefined ? parseDtype(flags.dtype) : undefined;
      const tagger = await Tagger.load({ model: flags.model, head: flags.head, dtype });
      const progress = startProgress('tagging', files.length);
      const width = Math.max(...files.map((f) => f.length), 4);
      if (format === 'csv') process.stdout.write('file,label,probability\n');
      try {
        for await (const r of tagger.tagStream(files, labels, { top, threshold, batchSize, attention: Boolean(flags.explain), onProgress: (d) => progress.update(d) })) {
          if (r.error) {
            failures++;
            process.stderr.write(`clip-decoder: ${r.error.message}\n`);
            continue;
          }
          write(r, format, width);
          if (flags.explain) await explain(tagger, r, flags.explain);
        }
      } finally {
        progress.stop();
        await tagger.dispose();
      }
      if (failures > 0) {
        process.stderr.write(`clip-decoder: ${failures} of ${files.length + missing.length} inputs failed\n`);
        process.exitCode = 1;
      }
    });
}

function write(r: TagResult, format: string, width: number): void {
  if (format === 'jsonl') {
    process.stdout.write(`${JSON.stringify({ file: r.source, labels: Object.fromEntries(r.labels.map((l) => [l.label, Number(l.probability.toFixed(6))])) })}\n`);
  } else if (format === 'csv') {
    for (const l of r.labels) process.stdout.write(`${csvCell(r.source)},${csvCell(l.label)},${l.probability.toFixed(6)}\n`);
  } else {
    const cells = r.labels.map((l) => `${l.label} ${l.probability.toFixed(3)}`).join('  ');
    process.stdout.write(`${r.source.padEnd(width)}  ${cells || '(no label passes the filters)'}\n`);
  }
}

async function explain(tagger: Tagger, r: TagResult, dir: string): Promise<void> {
  const stem = `${String(r.index).padStart(4, '0')}-${safeName(basename(r.source, extname(r.source)))}`;
  const { attentionOverlayPng } = await import('../tagger/overlay.ts');
  for (const l of r.labels) {
    if (!l.attention) continue;
    const png = await attentionOverlayPng(r.source, l.attention, tagger.grid.height, tagger.grid.width);
    await writeFileAtomic(join(dir, `${stem}--${safeName(l.label)}.png`), png);
  }
}
