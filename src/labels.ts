// The one label-list parser: the CLI (--labels, --labels-file), the library (Tagger) and the server read label
// lists through these functions, so every entry point trims, drops and limits labels the same way and names
// the label at fault. Errors are ClipDecoderErrors with a code per problem (NO_LABELS, TOO_MANY_LABELS,
// LABEL_TOO_LONG, DUPLICATE_LABEL), so a caller can map each to its own status.
import { readFileSync } from 'node:fs';
import { ClipDecoderError } from './errors.ts';

export interface LabelLimits {
  /** At most this many labels (default 10,000). */
  maxLabels?: number;
  /** At most this many characters (Unicode code points) per label (default 200). */
  maxLength?: number;
}

export interface LabelListOptions extends LabelLimits {
  /** Where the labels came from, named in errors (a flag, a field, a file). */
  source?: string;
}

/** Large vocabularies are cheap per image, so the count limit only stops accidents (a file of sentences). */
export const DEFAULT_MAX_LABELS = 10_000;
/** CLIP's text encoder reads 77 tokens; 200 characters is well past that for any real label. */
export const DEFAULT_MAX_LABEL_LENGTH = 200;

function prefix(source: string | undefined): string {
  return source ? `${source}: ` : '';
}

function shown(label: string): string {
  const chars = [...label];
  return chars.length > 40 ? `${chars.slice(0, 40).join('')}…` : label;
}

/**
 * Checks a list of labels: each trimmed, none blank, no duplicates, within the count and length limits.
 * Returns the trimmed labels in order.
 */
export function checkLabels(labels: readonly string[], options: LabelListOptions = {}): string[] {
  const { source } = options;
  const maxLabels = options.maxLabels ?? DEFAULT_MAX_LABELS;
  const maxLength = options.maxLength ?? DEFAULT_MAX_LABEL_LENGTH;
  if (labels.length === 0)
    throw new ClipDecoderError('NO_LABELS', `${prefix(source)}the label list is empty: give at least one label`, source);
  if (labels.length > maxLabels) {
    throw new ClipDecoderError('TOO_MANY_LABELS', `${prefix(source)}${labels.length} labels; at most ${maxLabels} are accepted`, source);
  }
  const seen = new Set<string>();
  return labels.map((raw, i) => {
    const label = raw.trim();
    if (!label) throw new ClipDecoderError('INPUT_INVALID', `${prefix(source)}label ${i + 1} is blank`, String(i + 1));
    const length = [...label].length;
    if (length > maxLength) {
      throw new ClipDecoderError(
        'LABEL_TOO_LONG',
        `${prefix(source)}label "${shown(label)}" has ${length} characters; at most ${maxLength} are accepted`,
        label,
      );
    }
    if (seen.has(label)) throw new ClipDecoderError('DUPLICATE_LABEL', `${prefix(source)}label "${label}" appears twice`, label);
    seen.add(label);
    return label;
  });
}

/** A comma-separated label list ("dog, cat,,sky"): trimmed, empty entries dropped, then checked. */
export function parseLabelList(text: string, options: LabelListOptions = {}): string[] {
  const labels = text
    .split(',')
    .map((l) => l.trim())
    .filter(Boolean);
  if (labels.length === 0)
    throw new ClipDecoderError('NO_LABELS', `${prefix(options.source)}no labels: give a comma-separated list`, options.source);
  return checkLabels(labels, options);
}

/**
 * Labels one per line: a line whose first non-blank character is `#` is a comment; a `#` anywhere else is part
 * of the label (`C#`, `F# minor`). Blank lines are skipped, CRLF and a UTF-8 byte-order mark are accepted.
 */
export function parseLabelLines(text: string, options: LabelListOptions = {}): string[] {
  const labels = text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (labels.length === 0)
    throw new ClipDecoderError('NO_LABELS', `${prefix(options.source)}no labels (only blank and # comment lines)`, options.source);
  return checkLabels(labels, options);
}

/** Reads a label file (UTF-8, one label a line) and parses it with parseLabelLines; errors name the file. */
export function readLabelFile(path: string, options: LabelLimits = {}): string[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new ClipDecoderError('INPUT_INVALID', `${path}: cannot read the label file (${(e as NodeJS.ErrnoException).code ?? e})`, path, {
      cause: e,
    });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ClipDecoderError('INPUT_INVALID', `${path}: the label file is not valid UTF-8`, path);
  }
  return parseLabelLines(text, { ...options, source: path });
}
