// The dataset format clip-decoder writes (EmojiTags) and reads back: a folder with `manifest.jsonl` (one image a
// line: {"id","file","labels":[...], ...extra fields}) and `split.json` (train/val/test ids, seen/unseen labels,
// pseudo-unseen labels for model selection, seed). `file` is relative to the folder.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/fs.ts';
import { ClipDecoderError } from '../errors.ts';
import { datasetError } from './types.ts';
import type { DatasetItem, DatasetSplit } from './types.ts';

export const MANIFEST_FILE = 'manifest.jsonl';
export const SPLIT_FILE = 'split.json';
export const SPLIT_FORMAT = 'clip-decoder-split';

export interface SplitFile extends DatasetSplit {
  format: typeof SPLIT_FORMAT;
  version: 1;
}

/** `extra` adds fields of any JSON shape to a line (loaders keep only string and number fields as metadata). */
export async function writeManifest(
  dir: string,
  items: readonly DatasetItem[],
  extra?: (item: DatasetItem) => Record<string, unknown>,
): Promise<void> {
  const lines = items.map((it) =>
    JSON.stringify({ id: it.id, file: it.file, labels: it.labels, ...(it.meta ?? {}), ...(extra?.(it) ?? {}) }),
  );
  await writeFileAtomic(join(dir, MANIFEST_FILE), `${lines.join('\n')}\n`);
}

export async function writeSplit(dir: string, split: DatasetSplit): Promise<void> {
  const file: SplitFile = {
    format: SPLIT_FORMAT,
    version: 1,
    ...(split.seed !== undefined ? { seed: split.seed } : {}),
    seen: split.seen,
    unseen: split.unseen,
    pseudoUnseen: split.pseudoUnseen,
    train: split.train,
    val: split.val,
    test: split.test,
  };
  await writeFileAtomic(join(dir, SPLIT_FILE), `${JSON.stringify(file)}\n`);
}

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/**
 * Reads a split file. Only `seen`/`unseen` are required (a label list without image parts is a valid split for
 * formats whose image parts come from elsewhere); missing parts are empty.
 */
export function readSplitFile(path: string): DatasetSplit {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ClipDecoderError('DATASET_INVALID', `split file ${path} does not exist`, path);
    throw new ClipDecoderError('DATASET_INVALID', `split file ${path} is not valid JSON: ${(e as Error).message}`, path);
  }
  const problems: string[] = [];
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw datasetError(path, ['expected a JSON object with "seen" and "unseen" label lists']);
  const o = raw as Record<string, unknown>;
  const list = (key: string, required: boolean): string[] => {
    const v = o[key];
    if (v === undefined) {
      if (required) problems.push(`"${key}" is missing (a list of strings)`);
      return [];
    }
    if (!isStringArray(v)) {
      problems.push(`"${key}" must be a list of strings`);
      return [];
    }
    return v;
  };
  const split: DatasetSplit = {
    seen: list('seen', true),
    unseen: list('unseen', true),
    pseudoUnseen: list('pseudoUnseen', false),
    train: list('train', false),
    val: list('val', false),
    test: list('test', false),
  };
  if (o.seed !== undefined) {
    if (typeof o.seed === 'number') split.seed = o.seed;
    else problems.push('"seed" must be a number');
  }
  if (problems.length > 0) throw datasetError(path, problems);
  return split;
}
