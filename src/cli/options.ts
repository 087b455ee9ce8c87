// Flags shared by several commands, and the bundled default model. Numbers and label lists are parsed by the
// library's parsers (src/numbers.ts, src/labels.ts), so the CLI, the server and the library agree.
import { existsSync } from 'node:fs';
import { ClipDecoderError } from '../errors.ts';
import { checkLabels, parseLabelList, readLabelFile, type LabelLimits } from '../labels.ts';
import { parseDecimal, type NumberKind } from '../numbers.ts';
import { DEFAULT_MODEL } from '../tagger/defaults.ts';
import type { ExpandedInputs } from '../util/images.ts';
import type { Command } from 'commander';
import { resolveShard, type ShardSpec } from '../scale/shard.ts';

/** The --model value, or the bundled model when none is given. */
export function modelOrDefault(model: string | undefined): string {
  if (model) return model;
  if (!existsSync(DEFAULT_MODEL)) {
    throw new ClipDecoderError(
      'MODEL_NOT_FOUND',
      `no --model given and the bundled model ${DEFAULT_MODEL} is not there: pass --model <CLIP folder>`,
      '--model',
    );
  }
  return DEFAULT_MODEL;
}

/** A numeric flag: a plain decimal number of the given kind, or BAD_PARAMETER naming the flag. */
export function numberFlag(value: string, flag: string, kind: NumberKind = 'number'): number {
  return parseDecimal(value, flag, kind);
}

/** As numberFlag, for a flag without a default: undefined stays undefined. */
export function optionalNumberFlag(value: string | undefined, flag: string, kind: NumberKind = 'number'): number | undefined {
  return value === undefined ? undefined : parseDecimal(value, flag, kind);
}

/** Labels from --labels (comma-separated) and/or --labels-file (one per line, lines starting with # are comments). */
export function readLabelFlags(labels: string | undefined, labelsFile: string | undefined, limits: LabelLimits = {}): string[] {
  const out: string[] = [];
  if (labels !== undefined) out.push(...parseLabelList(labels, { ...limits, source: '--labels' }));
  if (labelsFile !== undefined) out.push(...readLabelFile(labelsFile, limits));
  if (out.length === 0) throw new ClipDecoderError('NO_LABELS', 'no labels: give --labels a,b,c or --labels-file FILE', '--labels');
  // Both flags together: the union must still be free of duplicates and within the limits.
  return labels !== undefined && labelsFile !== undefined ? checkLabels(out, { ...limits, source: '--labels + --labels-file' }) : out;
}

/**
 * Prints what listing the inputs found wrong (warnings for skipped entries, one line per failed input). When
 * nothing is left to process it says so and sets exit code 1 (the inputs failed), and returns false.
 */
export function reportInputs(inputs: ExpandedInputs, verb: string): boolean {
  for (const s of inputs.skipped) process.stderr.write(`clip-decoder: warning: ${s.path}: ${s.reason}\n`);
  for (const m of inputs.missing) process.stderr.write(`clip-decoder: ${m.path}: ${m.reason}\n`);
  if (inputs.files.length > 0) return true;
  const n = inputs.missing.length;
  process.stderr.write(`clip-decoder: nothing to ${verb}: ${n === 1 ? 'the input yields' : `none of the ${n} inputs yields`} an image\n`);
  process.exitCode = 1;
  return false;
}

/** The --shard / --shard-count flags of extract, embed and tag (docs/scale.md). */
export function addShardOptions(cmd: Command): Command {
  return cmd
    .option(
      '--shard <i/n>',
      'do shard i of n (0 ≤ i < n) into OUT/shard-i-of-n/; default: a Slurm array task\'s SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT, or a Kubernetes Indexed Job\'s JOB_COMPLETION_INDEX of --shard-count; "none": unsharded whatever the environment',
    )
    .option('--shard-count <n>', "with JOB_COMPLETION_INDEX (Kubernetes Indexed Job): the number of shards (the Job's completions)");
}

/** The shard the flags and the environment ask for (undefined: unsharded). */
export function shardFlags(flags: { shard?: string; shardCount?: string }): ShardSpec | undefined {
  return resolveShard(flags, process.env);
}
