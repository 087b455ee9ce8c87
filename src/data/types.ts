// The one in-memory dataset every format loads into (EmojiTags, folder + CSV/JSONL, COCO, NUS-WIDE), and the
// helpers that turn it into training and evaluation sets. Training sets only ever carry seen labels.
import { resolve } from 'node:path';
import { ClipDecoderError } from '../errors.ts';

export type DatasetFormat = 'manifest' | 'csv' | 'jsonl' | 'coco' | 'nus-wide';

export interface DatasetItem {
  /** Unique within the dataset. */
  id: string;
  /** Image path relative to the dataset root (or absolute). */
  file: string;
  /** Every positive label of the image, seen and unseen; each is in `Dataset.labels`. */
  labels: string[];
  /** Extra per-image fields (EmojiTags: style, emoji, hexcode, name, group, subgroup). */
  meta?: Record<string, string | number>;
}

/**
 * Which images train, select and test, and which labels are seen in training. `train`, `val` and `test` are
 * disjoint; `val` is carved out of the training part for model selection. `pseudoUnseen` is a subset of `seen`
 * that model selection holds out of training and treats as unseen on `val` (the test's unseen labels stay untouched).
 */
export interface DatasetSplit {
  train: string[];
  val: string[];
  test: string[];
  seen: string[];
  unseen: string[];
  pseudoUnseen: string[];
  seed?: number;
}

export interface Dataset {
  name: string;
  format: DatasetFormat;
  /** Folder that item files are relative to. */
  root: string;
  /** The label vocabulary: seen labels then unseen labels when a split defines them. */
  labels: string[];
  items: DatasetItem[];
  split: DatasetSplit;
  /** What loading changed or noticed (images dropped, files skipped), for the user to read. */
  notes: string[];
}

export type SplitPart = 'train' | 'val' | 'test';

/** Absolute path of an item's image. */
export function imagePath(dataset: Dataset, item: DatasetItem): string {
  return resolve(dataset.root, item.file);
}

export function itemIndex(dataset: Dataset): Map<string, number> {
  const index = new Map<string, number>();
  dataset.items.forEach((item, i) => index.set(item.id, i));
  return index;
}

/** The items of one split part, in split-file order. */
export function splitItems(dataset: Dataset, part: SplitPart): DatasetItem[] {
  const index = itemIndex(dataset);
  return dataset.split[part].map((id) => dataset.items[index.get(id)!]!);
}

/** Binary targets for `items` × `labels`: Uint8Array [N, L] row-major, 1 where the item has the label. */
export function targetMatrix(items: readonly DatasetItem[], labels: readonly string[]): Uint8Array {
  const col = new Map<string, number>();
  labels.forEach((l, j) => col.set(l, j));
  const L = labels.length;
  const targets = new Uint8Array(items.length * L); // [N, L]
  items.forEach((item, i) => {
    for (const l of item.labels) {
      const j = col.get(l);
      if (j !== undefined) targets[i * L + j] = 1;
    }
  });
  return targets;
}

/**
 * Model selection ('select') trains on `train` with the seen labels minus the pseudo-unseen ones and evaluates
 * on `val`; the final run ('final') trains on `train` + `val` with all seen labels and evaluates on `test`.
 */
export type Stage = 'select' | 'final';

export interface TrainingSet {
  ids: string[];
  /** Seen labels only: unseen labels (and, when selecting, pseudo-unseen labels) never appear here. */
  labels: string[];
  targets: Uint8Array; // [N, L]
}

export function trainingSet(dataset: Dataset, stage: Stage = 'final'): TrainingSet {
  const { split } = dataset;
  const held = new Set(stage === 'select' ? split.pseudoUnseen : []);
  const labels = split.seen.filter((l) => !held.has(l));
  const items = stage === 'select' ? splitItems(dataset, 'train') : [...splitItems(dataset, 'train'), ...splitItems(dataset, 'val')];
  return { ids: items.map((it) => it.id), labels, targets: targetMatrix(items, labels) };
}

export interface EvaluationSet {
  ids: string[];
  seen: string[];
  unseen: string[];
  /** seen then unseen, the column order of `targets`. */
  labels: string[];
  targets: Uint8Array; // [N, L]
}

export function evaluationSet(dataset: Dataset, stage: Stage = 'final'): EvaluationSet {
  const { split } = dataset;
  let seen = split.seen;
  let unseen = split.unseen;
  let items: DatasetItem[];
  if (stage === 'select') {
    const held = new Set(split.pseudoUnseen);
    seen = split.seen.filter((l) => !held.has(l));
    unseen = split.pseudoUnseen;
    items = splitItems(dataset, 'val');
  } else {
    items = splitItems(dataset, 'test');
  }
  const labels = [...seen, ...unseen];
  return { ids: items.map((it) => it.id), seen, unseen, labels, targets: targetMatrix(items, labels) };
}

/**
 * Checks that a dataset is self-consistent: unique ids, labels in the vocabulary, split ids known and in one
 * part only, seen and unseen disjoint and covering the vocabulary, pseudo-unseen inside seen. `source` names the
 * file(s) it came from in the error.
 */
export function validateDataset(dataset: Dataset, source: string): void {
  const problems: string[] = [];
  const vocab = new Set(dataset.labels);
  if (vocab.size !== dataset.labels.length) problems.push('the label vocabulary lists a label twice');
  const ids = new Set<string>();
  for (const item of dataset.items) {
    if (ids.has(item.id)) problems.push(`duplicate image id "${item.id}"`);
    ids.add(item.id);
    for (const l of item.labels) if (!vocab.has(l)) problems.push(`image "${item.id}" has label "${l}" that is not in the vocabulary`);
  }
  const { split } = dataset;
  const part = new Map<string, SplitPart>();
  for (const p of ['train', 'val', 'test'] as const) {
    for (const id of split[p]) {
      if (!ids.has(id)) problems.push(`split "${p}" names image "${id}" that is not in the dataset`);
      const prev = part.get(id);
      if (prev) problems.push(`image "${id}" is in both "${prev}" and "${p}"`);
      part.set(id, p);
    }
  }
  const seen = new Set(split.seen);
  for (const l of split.unseen) if (seen.has(l)) problems.push(`label "${l}" is both seen and unseen`);
  for (const l of [...split.seen, ...split.unseen]) if (!vocab.has(l)) problems.push(`split label "${l}" is not in the vocabulary`);
  const covered = new Set([...split.seen, ...split.unseen]);
  for (const l of dataset.labels) if (!covered.has(l)) problems.push(`label "${l}" is neither seen nor unseen`);
  for (const l of split.pseudoUnseen) if (!seen.has(l)) problems.push(`pseudo-unseen label "${l}" is not a seen label`);
  if (problems.length > 0) throw datasetError(source, problems);
}

/** One DATASET_INVALID error listing the first problems (each already naming file:line where it can). */
export function datasetError(source: string, problems: readonly string[], limit = 20): ClipDecoderError {
  const shown = problems.slice(0, limit).map((p) => `  ${p}`);
  const more = problems.length > limit ? [`  ... and ${problems.length - limit} more`] : [];
  const what = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  return new ClipDecoderError('DATASET_INVALID', [`${source}: ${what}; fix the file(s) and rerun:`, ...shown, ...more].join('\n'), source);
}
