// Format (a): a folder of images plus a label file, CSV or JSONL, mapping each image to its labels. The
// dataset folders clip-decoder writes (manifest.jsonl + split.json, e.g. EmojiTags) are the JSONL case.
//
// JSONL: one object a line, {"file": "cats/1.jpg", "labels": ["cat", "sofa"]}, optionally "id" (default: file)
// and "split" ("train" | "val" | "test"); other fields are kept as metadata.
// CSV: a header row naming a file column (file, image, filename, path or image_path) and either a labels column
// (labels or tags; labels separated by "|" or ";") or one 0/1 column per label; optional id and split columns.
//
// Next to the label file, or given explicitly: labels.txt (the vocabulary, one label a line; a label outside it
// is an error) and split.json (train/val/test ids, seen/unseen labels). Without a split, every image is test,
// labels are seen unless `unseen` names some, and per-line "split" fields decide the image parts.
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { CsvSyntaxError, parseCsv } from './csv.ts';
import { ItemPolicy, readListFile, resolveUnseen, type EmptyPolicy, type MissingPolicy } from './loader-rules.ts';
import { readSplitFile, SPLIT_FILE } from './manifest.ts';
import { datasetError, validateDataset } from './types.ts';
import type { Dataset, DatasetItem, DatasetSplit, SplitPart } from './types.ts';

export interface LoadOptions {
  /** Folder image paths are relative to (default: the label file's folder). */
  imagesDir?: string;
  /** Vocabulary: a file with one label a line, or the labels (default: labels.txt beside the label file, if any). */
  vocabulary?: string | readonly string[];
  /** Split file (default: split.json beside the label file, if any). */
  split?: string;
  /** Unseen labels when no split file says: a list, a file with one label a line, or "all". */
  unseen?: string | readonly string[];
  /** Images with no label: an error (default for label files), dropped, or kept. */
  emptyLabels?: EmptyPolicy;
  /** Image files that do not exist: an error (default), dropped, or not checked at all (evaluation from scores). */
  missingFiles?: MissingPolicy;
}

const FILE_COLUMNS = ['file', 'image', 'filename', 'file_name', 'path', 'image_path'];
const LABEL_COLUMNS = ['labels', 'tags', 'label'];
const PARTS: readonly SplitPart[] = ['train', 'val', 'test'];

interface RawLine {
  line: number;
  id: string;
  file: string;
  labels: string[];
  part?: SplitPart;
  meta?: Record<string, string | number>;
}

/** Problems sorted by the line number they name ("file:12: ..."), so parse and content errors interleave in file order. */
function byLine(problems: readonly string[]): string[] {
  const lineOf = (p: string) => Number(/:(\d+): /.exec(p)?.[1] ?? 0);
  return [...problems].sort((a, b) => lineOf(a) - lineOf(b));
}

function splitLabelCell(cell: string): string[] {
  return cell
    .split(/[|;]/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

function parseJsonl(path: string, text: string, problems: string[]): RawLine[] {
  const out: RawLine[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = i + 1;
    const src = raw.trim();
    if (src.length === 0) return;
    const at = `${path}:${line}`;
    let o: unknown;
    try {
      o = JSON.parse(src);
    } catch (e) {
      problems.push(`${at}: not valid JSON (${(e as Error).message})`);
      return;
    }
    if (typeof o !== 'object' || o === null || Array.isArray(o)) {
      problems.push(`${at}: expected an object like {"file": "a.jpg", "labels": ["cat"]}`);
      return;
    }
    const rec = o as Record<string, unknown>;
    const file = rec.file ?? rec.image ?? rec.file_name;
    if (typeof file !== 'string' || file.length === 0) {
      problems.push(`${at}: "file" is missing or not a string`);
      return;
    }
    const labels = rec.labels;
    if (!Array.isArray(labels) || !labels.every((l) => typeof l === 'string')) {
      problems.push(`${at}: "labels" must be a list of strings`);
      return;
    }
    const id = rec.id === undefined ? file : rec.id;
    if (typeof id !== 'string' && typeof id !== 'number') {
      problems.push(`${at}: "id" must be a string or a number`);
      return;
    }
    let part: SplitPart | undefined;
    if (rec.split !== undefined) {
      if (!PARTS.includes(rec.split as SplitPart)) {
        problems.push(`${at}: "split" must be one of train, val, test (got ${JSON.stringify(rec.split)})`);
        return;
      }
      part = rec.split as SplitPart;
    }
    const meta: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(rec)) {
      if (['id', 'file', 'image', 'file_name', 'labels', 'split'].includes(k)) continue;
      if (typeof v === 'string' || typeof v === 'number') meta[k] = v;
    }
    out.push({
      line,
      id: String(id),
      file,
      labels: (labels as string[]).map((l) => l.trim()),
      part,
      meta: Object.keys(meta).length > 0 ? meta : undefined,
    });
  });
  return out;
}

function parseCsvLabels(path: string, text: string, problems: string[]): { lines: RawLine[]; oneHotLabels?: string[] } {
  let records: ReturnType<typeof parseCsv>;
  try {
    records = parseCsv(text);
  } catch (e) {
    if (e instanceof CsvSyntaxError) {
      problems.push(`${path}:${e.line}: ${e.message}`);
      return { lines: [] };
    }
    throw e;
  }
  if (records.length === 0) {
    problems.push(`${path}: empty file (expected a header row such as "file,labels")`);
    return { lines: [] };
  }
  const header = records[0]!.fields.map((h) => h.trim());
  const lower = header.map((h) => h.toLowerCase());
  const fileCol = lower.findIndex((h) => FILE_COLUMNS.includes(h));
  if (fileCol < 0) {
    problems.push(`${path}:1: no file column in the header (name one of ${FILE_COLUMNS.join(', ')})`);
    return { lines: [] };
  }
  const idCol = lower.indexOf('id');
  const splitCol = lower.indexOf('split');
  const labelCol = lower.findIndex((h) => LABEL_COLUMNS.includes(h));
  // Without a labels column, every other column is one label with 0/1 values.
  const oneHotCols = labelCol >= 0 ? [] : header.map((_, j) => j).filter((j) => j !== fileCol && j !== idCol && j !== splitCol);
  if (labelCol < 0 && oneHotCols.length === 0) {
    problems.push(`${path}:1: no labels column (name it "labels") and no 0/1 label columns`);
    return { lines: [] };
  }
  const lines: RawLine[] = [];
  for (const rec of records.slice(1)) {
    const at = `${path}:${rec.line}`;
    if (rec.fields.length !== header.length) {
      problems.push(`${at}: ${rec.fields.length} fields, the header has ${header.length}`);
      continue;
    }
    const file = rec.fields[fileCol]!.trim();
    if (file.length === 0) {
      problems.push(`${at}: empty file name`);
      continue;
    }
    let labels: string[];
    if (labelCol >= 0) {
      labels = splitLabelCell(rec.fields[labelCol]!);
    } else {
      labels = [];
      let bad = false;
      for (const j of oneHotCols) {
        const v = rec.fields[j]!.trim();
        if (v === '1') labels.push(header[j]!);
        else if (v !== '0' && v !== '') {
          problems.push(`${at}: column "${header[j]}" must be 0 or 1, got "${v}"`);
          bad = true;
          break;
        }
      }
      if (bad) continue;
    }
    let part: SplitPart | undefined;
    if (splitCol >= 0) {
      const v = rec.fields[splitCol]!.trim();
      if (v !== '') {
        if (!PARTS.includes(v as SplitPart)) {
          problems.push(`${at}: split must be one of train, val, test (got "${v}")`);
          continue;
        }
        part = v as SplitPart;
      }
    }
    const id = idCol >= 0 && rec.fields[idCol]!.trim() !== '' ? rec.fields[idCol]!.trim() : file;
    lines.push({ line: rec.line, id, file, labels, part });
  }
  return { lines, oneHotLabels: labelCol >= 0 ? undefined : oneHotCols.map((j) => header[j]!) };
}

function resolveVocabulary(option: LoadOptions['vocabulary'], labelFile: string): string[] | undefined {
  if (Array.isArray(option)) return [...option];
  if (typeof option === 'string') return readListFile(option, 'vocabulary file');
  const sibling = join(dirname(labelFile), 'labels.txt');
  return existsSync(sibling) ? readListFile(sibling, 'vocabulary file') : undefined;
}

/** The vocabulary and split of a label file: a split file, when there is one, also fixes the vocabulary. */
interface LabelSpace {
  vocabulary?: string[];
  splitPath?: string;
  splitFile?: DatasetSplit;
}

function resolveLabelSpace(labelFile: string, options: LoadOptions, oneHotLabels: string[] | undefined): LabelSpace {
  const sibling = join(dirname(labelFile), SPLIT_FILE);
  const splitPath = options.split ?? (existsSync(sibling) ? sibling : undefined);
  const splitFile = splitPath ? readSplitFile(splitPath) : undefined;
  const vocabulary = resolveVocabulary(options.vocabulary, labelFile) ?? oneHotLabels;
  if (!splitFile) return { vocabulary, splitPath, splitFile };
  const splitVocab = [...splitFile.seen, ...splitFile.unseen];
  if (vocabulary) {
    const a = new Set(vocabulary);
    const diff = splitVocab.filter((l) => !a.has(l)).concat(vocabulary.filter((l) => !splitVocab.includes(l)));
    if (diff.length > 0) throw datasetError(splitPath!, [`seen + unseen labels differ from the vocabulary (e.g. "${diff[0]}")`]);
  }
  return { vocabulary: splitVocab, splitPath, splitFile };
}

/** The parsed lines that become items: ids unique, labels known, then the empty-label and missing-file policies. */
function admitItems(
  labelFile: string,
  root: string,
  lines: readonly RawLine[],
  space: LabelSpace,
  options: LoadOptions,
  problems: string[],
): { items: DatasetItem[]; parts: Map<string, SplitPart>; listed: Set<string>; policy: ItemPolicy } {
  const vocab = space.vocabulary ? new Set(space.vocabulary) : undefined;
  const vocabSource = space.splitFile ? space.splitPath! : 'the vocabulary file';
  const policy = new ItemPolicy({ empty: options.emptyLabels ?? 'error', missing: options.missingFiles ?? 'error' }, problems);
  const firstLine = new Map<string, number>();
  const items: DatasetItem[] = [];
  const parts = new Map<string, SplitPart>();
  for (const raw of lines) {
    const at = `${labelFile}:${raw.line}`;
    const prev = firstLine.get(raw.id);
    if (prev !== undefined) {
      problems.push(`${at}: duplicate id "${raw.id}" (first on line ${prev})`);
      continue;
    }
    firstLine.set(raw.id, raw.line);
    const labels = [...new Set(raw.labels)];
    if (labels.some((l) => l.length === 0)) {
      problems.push(`${at}: an empty label name`);
      continue;
    }
    const unknown = vocab ? labels.filter((l) => !vocab.has(l)) : [];
    if (unknown.length > 0) {
      problems.push(
        `${at}: unknown label${unknown.length > 1 ? 's' : ''} ${unknown.map((l) => `"${l}"`).join(', ')} (not in ${vocabSource})`,
      );
      continue;
    }
    if (!policy.admit(at, raw.file, labels, resolve(root, raw.file))) continue;
    items.push({ id: raw.id, file: raw.file, labels, ...(raw.meta ? { meta: raw.meta } : {}) });
    if (raw.part) parts.set(raw.id, raw.part);
  }
  return { items, parts, listed: new Set(firstLine.keys()), policy };
}

/**
 * The split: the split file's parts (images dropped above leave it too; anything else unknown is an error in
 * validateDataset), or else per-line "split" fields with every other image in test.
 */
function resolveLabelSplit(
  items: readonly DatasetItem[],
  parts: ReadonlyMap<string, SplitPart>,
  listed: ReadonlySet<string>,
  labels: readonly string[],
  splitFile: DatasetSplit | undefined,
  unseenOption: LoadOptions['unseen'],
): DatasetSplit {
  const kept = new Set(items.map((it) => it.id));
  if (splitFile && splitFile.train.length + splitFile.val.length + splitFile.test.length > 0) {
    const keep = (ids: string[]) => ids.filter((id) => kept.has(id) || !listed.has(id));
    return { ...splitFile, train: keep(splitFile.train), val: keep(splitFile.val), test: keep(splitFile.test) };
  }
  const unseen = splitFile ? splitFile.unseen : (resolveUnseen(unseenOption, labels) ?? []);
  const unseenSet = new Set(unseen);
  const byPart = (p: SplitPart) => items.filter((it) => (parts.get(it.id) ?? 'test') === p).map((it) => it.id);
  return {
    train: byPart('train'),
    val: byPart('val'),
    test: byPart('test'),
    seen: splitFile ? splitFile.seen : labels.filter((l) => !unseenSet.has(l)),
    unseen,
    pseudoUnseen: splitFile?.pseudoUnseen ?? [],
    ...(splitFile?.seed !== undefined ? { seed: splitFile.seed } : {}),
  };
}

/** Loads a CSV or JSONL label file (format a), or a dataset folder written by clip-decoder (manifest.jsonl). */
export function loadLabelFile(path: string, options: LoadOptions = {}): Dataset {
  const labelFile = resolve(path);
  if (!existsSync(labelFile)) throw new ClipDecoderError('DATASET_INVALID', `label file ${labelFile} does not exist`, labelFile);
  const ext = extname(labelFile).toLowerCase();
  const isJsonl = ext === '.jsonl' || ext === '.ndjson';
  if (!isJsonl && ext !== '.csv' && ext !== '.tsv') {
    throw new ClipDecoderError('DATASET_INVALID', `${labelFile}: label files must be .csv, .tsv or .jsonl`, labelFile);
  }
  const root = resolve(options.imagesDir ?? dirname(labelFile));
  const text = readFileSync(labelFile, 'utf8');
  const problems: string[] = [];
  const parsed = isJsonl ? { lines: parseJsonl(labelFile, text, problems) } : parseCsvLabels(labelFile, text, problems);
  const space = resolveLabelSpace(labelFile, options, parsed.oneHotLabels);
  const { items, parts, listed, policy } = admitItems(labelFile, root, parsed.lines, space, options, problems);
  if (problems.length > 0) throw datasetError(labelFile, byLine(problems));

  const labels = space.vocabulary ?? [...new Set(items.flatMap((it) => it.labels))].sort();
  const split = resolveLabelSplit(items, parts, listed, labels, space.splitFile, options.unseen);
  const dataset: Dataset = {
    name: basename(dirname(labelFile)),
    format: isJsonl ? (basename(labelFile) === 'manifest.jsonl' ? 'manifest' : 'jsonl') : 'csv',
    root,
    labels: [...split.seen, ...split.unseen].length === labels.length ? [...split.seen, ...split.unseen] : labels,
    items,
    split,
    notes: policy.notes(),
  };
  validateDataset(dataset, space.splitPath ?? labelFile);
  return dataset;
}
