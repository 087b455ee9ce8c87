// What every dataset loader (label files, COCO, NUS-WIDE) does alike: list files, the unseen-label option, and
// one policy for images with no labels and for image files that do not exist.
import { existsSync, readFileSync } from 'node:fs';
import { ClipDecoderError } from '../errors.ts';

/** Images with no label: an error, dropped, or kept with an empty label set. */
export type EmptyPolicy = 'error' | 'drop' | 'keep';
/** Image files that do not exist: an error, dropped, or not checked at all (evaluation from scores). */
export type MissingPolicy = 'error' | 'drop' | 'ignore';

/** Reads a list file: one entry a line, blank lines and surrounding spaces ignored. */
export function readListFile(path: string, what: string): string[] {
  if (!existsSync(path)) throw new ClipDecoderError('DATASET_INVALID', `${what} ${path} does not exist`, path);
  return readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

/** The `unseen` option of every loader: a list, a file with one label a line, or "all". */
export function resolveUnseen(option: string | readonly string[] | undefined, labels: readonly string[]): string[] | undefined {
  if (option === undefined) return undefined;
  if (option === 'all') return [...labels];
  if (Array.isArray(option)) return [...option];
  return readListFile(option as string, 'unseen label file');
}

export interface ItemPolicyOptions {
  empty: EmptyPolicy;
  missing: MissingPolicy;
  /** What an image without labels lacks, in messages: "labels" (label files) or "annotations" (COCO). */
  lacks?: string;
  /** Added to a missing-file problem, e.g. how to point at the image folder. */
  missingHint?: string;
}

/**
 * Applies the empty-label and missing-file policies to one candidate image at a time, pushing a problem (an
 * error the loader reports with all the others) or counting a drop, and turns the counts into notes.
 */
export class ItemPolicy {
  private droppedEmpty = 0;
  private droppedMissing = 0;
  private readonly lacks: string;

  constructor(
    private readonly options: ItemPolicyOptions,
    private readonly problems: string[],
  ) {
    this.lacks = options.lacks ?? 'labels';
  }

  /**
   * Whether the image at `file` (absolute) with these labels is kept. `at` names it in a problem
   * ("labels.jsonl:5", "instances.json: image 12"; empty for none); `name` is how the user wrote it.
   */
  admit(at: string, name: string, labels: readonly string[], file: string): boolean {
    const where = at === '' ? '' : `${at}: `;
    if (labels.length === 0) {
      if (this.options.empty === 'error') {
        this.problems.push(`${where}image "${name}" has no ${this.lacks} (remove it, or allow empty label sets)`);
        return false;
      }
      if (this.options.empty === 'drop') {
        this.droppedEmpty++;
        return false;
      }
    }
    if (this.options.missing !== 'ignore' && !existsSync(file)) {
      if (this.options.missing === 'error') {
        this.problems.push(`${where}image file ${file} does not exist${this.options.missingHint ? ` (${this.options.missingHint})` : ''}`);
        return false;
      }
      this.droppedMissing++;
      return false;
    }
    return true;
  }

  /** One note per kind of image left out, each prefixed (e.g. with the file's name). */
  notes(prefix = ''): string[] {
    const out: string[] = [];
    if (this.droppedEmpty > 0) out.push(`${prefix}${this.droppedEmpty} image(s) without ${this.lacks} dropped`);
    if (this.droppedMissing > 0) out.push(`${prefix}${this.droppedMissing} image(s) whose file does not exist dropped`);
    return out;
  }
}
