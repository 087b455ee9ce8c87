// `tag`: independent label probabilities for images, as a table, JSON lines or CSV; attention overlays with
// --explain.
import type { Command } from 'commander';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import type { TagLibraryOptions } from '../library/tag-library.ts';
import { SIDECAR_NAMINGS, type SidecarChange, type SidecarNaming } from '../library/xmp.ts';
import type { Tagger, TagResult } from '../tagger/tagger.ts';
import { expandImageInputs } from '../util/images.ts';
import { DEFAULT_MAX_FILE_BYTES, writeFileAtomic } from '../util/fs.ts';
import { addShardOptions, numberFlag, optionalNumberFlag, readLabelFlags, reportInputs, shardFlags } from './options.ts';
import { startLazyProgress, startProgress } from './progress.ts';

interface TagFlags {
  labels?: string;
  labelsFile?: string;
  model?: string;
  head?: string;
  calibration?: string;
  dtype?: string;
  top?: string;
  /** true: the flag without a value (the calibration's threshold). */
  threshold?: string | true;
  format?: string;
  explain?: string;
  batchSize: string;
  maxFileBytes: string;
  out?: string;
  force?: boolean;
  xmp?: boolean;
  xmpNaming: string;
  dryRun?: boolean;
  shard?: string;
  shardCount?: string;
}

function csvCell(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function errno(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code}: ${err.message.replace(/^\w+: /, '').replace(/, \w+ '.*'$/, '')}` : String(e);
}

/** Creates the --explain folder and checks it can be written, before any model is loaded. */
function prepareExplainDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? `${errno(e)}: a file is in the way of the folder` : errno(e);
    throw new ClipDecoderError('OUTPUT_UNWRITABLE', `--explain ${dir}: cannot create or write the folder (${why})`, dir, { cause: e });
  }
}

export function registerTagCommand(program: Command): void {
  const tag = program
    .command('tag')
    .description('independent probability of each label for each image (any labels: open vocabulary)')
    .argument('<paths...>', 'image files or folders (walked recursively)')
    .option('-l, --labels <a,b,c>', 'comma-separated labels')
    .option('--labels-file <file>', 'labels, one per line (a line starting with # is a comment)')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled pico-CLIP)')
    .option(
      '--head <dir|none>',
      'CLIP-Decoder head checkpoint (default: the bundled head; its calibration.json, if any, is used); "none": plain CLIP, ' +
        "calibrated by the model folder's calibration.json or --calibration, else the model's own sigmoid(s·cos + b)",
    )
    .option(
      '--calibration <file>',
      "calibration file (fitted for this model and head, or for plain CLIP with --head none) instead of the folder's calibration.json",
    )
    .option('--dtype <fp32|fp16|q8|...>', 'ONNX weights of the model folder: fp32 (default) or its _fp16 / _quantized (q8) / ... variant')
    .option('-k, --top <K>', 'keep the K most probable labels per image')
    .option('-p, --threshold [p]', "keep labels with probability ≥ p; without p: the calibration's threshold (chosen on validation)")
    .option('-f, --format <table|jsonl|csv>', 'output format (default: table on a terminal, else jsonl)')
    .option('--explain <dir>', 'write an attention overlay PNG per image and kept label into DIR')
    .option('-b, --batch-size <n>', 'images per ONNX run', '16')
    .option('--max-file-bytes <n>', 'refuse image files larger than this', String(DEFAULT_MAX_FILE_BYTES))
    .option('-o, --out <results.jsonl>', 'incremental: append one record per image to this file; a rerun skips images already in it')
    .option('--force', 'with --out: tag every image again and start the results file anew')
    .option(
      '--xmp',
      "with --out: write labels ≥ --threshold (default: the calibration's threshold, else 0.5) as dc:subject keywords into XMP sidecars (never the images)",
    )
    .option(
      '--xmp-naming <append|replace>',
      'sidecar name: append (photo.jpg.xmp: darktable, digiKam) or replace (photo.xmp: Adobe)',
      'append',
    )
    .option('--dry-run', 'with --out: write nothing; show what each sidecar would become');
  addShardOptions(tag).action(async (paths: string[], flags: TagFlags) => {
    const labels = readLabelFlags(flags.labels, flags.labelsFile);
    const top = optionalNumberFlag(flags.top, '--top', 'positive-integer');
    const givenThreshold = flags.threshold === true ? 'calibrated' : optionalNumberFlag(flags.threshold, '--threshold', 'probability');
    const format = flags.format ?? (process.stdout.isTTY ? 'table' : 'jsonl');
    if (!['table', 'jsonl', 'csv'].includes(format))
      throw new ClipDecoderError('BAD_PARAMETER', `--format must be table, jsonl or csv, got "${format}"`, '--format');
    const batchSize = numberFlag(flags.batchSize, '--batch-size', 'positive-integer');
    const maxFileBytes = numberFlag(flags.maxFileBytes, '--max-file-bytes', 'positive-integer');
    const shard = shardFlags(flags);
    if (shard && flags.out === undefined)
      throw new ClipDecoderError(
        'INPUT_INVALID',
        'a sharded tag run writes OUT.shards/shard-i-of-n/: give --out <results.jsonl>',
        '--shard',
      );
    if (flags.out === undefined) {
      for (const [on, flag] of [
        [flags.force, '--force'],
        [flags.xmp, '--xmp'],
        [flags.dryRun, '--dry-run'],
      ] as const)
        if (on) throw new ClipDecoderError('INPUT_INVALID', `${flag} works with --out <results.jsonl>: give it`, flag);
    } else if (flags.explain !== undefined || flags.format !== undefined) {
      throw new ClipDecoderError(
        'INPUT_INVALID',
        `--out writes records, not ${flags.explain ? '--explain overlays' : '--format output'}: drop one`,
        '--out',
      );
    }
    if (!SIDECAR_NAMINGS.includes(flags.xmpNaming as SidecarNaming))
      throw new ClipDecoderError('BAD_PARAMETER', `--xmp-naming must be append or replace, got "${flags.xmpNaming}"`, '--xmp-naming');
    if (flags.explain !== undefined) prepareExplainDir(flags.explain);

    const expanded = expandImageInputs(paths);
    const { files, missing } = expanded;
    const inputs = files.length + missing.length;
    // Nothing to tag is a failed input (exit 1), each named; no model is loaded for nothing.
    if (!reportInputs(expanded, 'tag')) return;
    let failures = missing.length;

    const [{ Tagger }, { parseDtype }, overlay] = await Promise.all([
      import('../tagger/tagger.ts'),
      import('../clip/family.ts'),
      flags.explain !== undefined ? import('../tagger/overlay.ts') : undefined,
    ]);
    const dtype = flags.dtype !== undefined ? parseDtype(flags.dtype) : undefined;
    const tagger = await Tagger.load({ model: flags.model, head: flags.head, calibration: flags.calibration, maxFileBytes, dtype });
    let threshold: number | undefined;
    try {
      threshold = tagger.resolveThreshold(givenThreshold);
    } catch (e) {
      await tagger.dispose();
      throw e;
    }
    process.stderr.write(`clip-decoder: scoring: ${tagger.describeMode()}\n`);
    if (flags.out !== undefined) {
      const xmp = flags.xmp
        ? { naming: flags.xmpNaming as SidecarNaming, threshold: threshold ?? tagger.threshold ?? undefined, top }
        : undefined;
      try {
        failures += await tagIntoLibrary(tagger, files, labels, {
          out: flags.out,
          force: flags.force,
          dryRun: flags.dryRun,
          batchSize,
          xmp,
          shard,
        });
      } finally {
        await tagger.dispose();
      }
      if (failures > 0) process.exitCode = 1;
      return;
    }
    const labelParts = overlay?.overlayLabelParts(labels);
    const progress = startProgress('tagging', files.length);
    const out = (text: string) => progress.write(process.stdout, text);
    const width = Math.max(...files.map((f) => f.length), 4);
    if (format === 'csv') out('file,label,probability\n');
    try {
      for await (const r of tagger.tagStream(files, labels, {
        top,
        threshold,
        batchSize,
        attention: flags.explain !== undefined,
        onProgress: (d) => progress.update(d),
      })) {
        if (r.error) {
          failures++;
          progress.write(process.stderr, `clip-decoder: ${r.error.message}\n`);
          continue;
        }
        out(formatResult(r, format, width));
        if (flags.explain !== undefined) await explain(tagger, r, flags.explain, labelParts!);
      }
    } finally {
      progress.stop();
      await tagger.dispose();
    }
    if (failures > 0) {
      process.stderr.write(`clip-decoder: ${failures} of ${inputs} inputs failed\n`);
      process.exitCode = 1;
    }
  });
}

/** `tag --out`: the incremental library run, with a progress bar and a summary line; returns the failures. */
async function tagIntoLibrary(
  tagger: Tagger,
  files: string[],
  labels: string[],
  options: Omit<TagLibraryOptions, 'onProgress' | 'onSidecar' | 'onFailure' | 'onWarning'>,
): Promise<number> {
  const { tagLibrary } = await import('../library/tag-library.ts');
  const progress = startLazyProgress('tagging');
  const say = (stream: NodeJS.WritableStream, text: string) => progress.write(stream, text);
  try {
    const s = await tagLibrary(tagger, files, labels, {
      ...options,
      // The bar counts the images to tag, known once the already-done ones are set aside.
      onProgress: (done, total) => progress.update(done, total),
      onSidecar: (c) => options.dryRun && say(process.stdout, describeSidecarChange(c)),
      onFailure: (m) => say(process.stderr, `clip-decoder: ${m}\n`),
      onWarning: (m) => say(process.stderr, `clip-decoder: warning: ${m}\n`),
    });
    progress.stop();
    const dry = options.dryRun ? ' (dry run: nothing written)' : '';
    process.stderr.write(`clip-decoder: ${s.done} tagged, ${s.skipped} skipped (already in ${s.results}), ${s.failed} failed${dry}\n`);
    return s.failed;
  } finally {
    progress.stop();
  }
}

function describeSidecarChange(c: SidecarChange): string {
  const name = /[\n\r\t]/.test(c.sidecar) ? JSON.stringify(c.sidecar) : c.sidecar; // a name with a newline, quoted
  const edits = [...c.added.map((k) => `+${k}`), ...c.removed.map((k) => `-${k}`)];
  const what = c.created ? 'would create' : edits.length > 0 ? 'would update' : 'unchanged';
  const kept = c.kept.length > 0 ? ` (kept: ${c.kept.join(', ')})` : '';
  return `${name}: ${what}${edits.length > 0 ? ` ${edits.join(' ')}` : ''}${kept}\n`;
}

function formatResult(r: TagResult, format: string, width: number): string {
  if (format === 'jsonl') {
    const labels = Object.fromEntries(r.labels.map((l) => [l.label, Number(l.probability.toFixed(6))]));
    return `${JSON.stringify({ file: r.source, labels, mode: r.mode })}\n`;
  } else if (format === 'csv') {
    return r.labels.map((l) => `${csvCell(r.source)},${csvCell(l.label)},${l.probability.toFixed(6)}\n`).join('');
  }
  const cells = r.labels.map((l) => `${l.label} ${l.probability.toFixed(3)}`).join('  ');
  return `${r.source.padEnd(width)}  ${cells || '(no label passes the filters)'}\n`;
}

async function explain(tagger: Tagger, r: TagResult, dir: string, labelParts: Map<string, string>): Promise<void> {
  const { attentionOverlayPng, overlayFileName } = await import('../tagger/overlay.ts');
  for (const l of r.labels) {
    if (!l.attention) continue;
    const png = await attentionOverlayPng(r.source, l.attention, tagger.grid.height, tagger.grid.width);
    const file = join(dir, overlayFileName(r.index, r.source, labelParts.get(l.label)!));
    try {
      await writeFileAtomic(file, png);
    } catch (e) {
      throw new ClipDecoderError('OUTPUT_UNWRITABLE', `--explain: cannot write ${file} (${errno(e)})`, file, { cause: e });
    }
  }
}
