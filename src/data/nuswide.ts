// Format (c): the NUS-WIDE release layout, loaded with the standard zero-shot split of LESA/BiAM/MKT:
// 925 seen labels (the 1,000 Flickr tags of TagList1k.txt minus the 75 that are concepts), 81 unseen labels
// (Concepts81.txt, ground truth from the human-checked concept labels, never from tags), 161,789 train and
// 107,859 test images from the official image lists.
//
//   ImageList/Imagelist.txt, TrainImagelist.txt, TestImagelist.txt   (paths such as actor\0001_2124494179.jpg)
//   NUS_WID_Tags/TagList1k.txt, Train_Tags1k.dat + Test_Tags1k.dat (rows = image lists) or AllTags1k.txt (rows = Imagelist)
//   ConceptsList/Concepts81.txt
//   Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt + _Test.txt, or Groundtruth/AllLabels/Labels_<concept>.txt,
//   or AllLabels81.txt (one row per Imagelist line, one 0/1 column per concept in Concepts81 order)
//   Flickr/<category>/<file>.jpg   (the images; not needed to evaluate precomputed scores)
//
// Matrices are 0/1 values separated by spaces or tabs, one image a line. Everything is checked: row counts
// against the lists, values, column counts, and every error names the file and line.
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipDecoderError } from '../errors.ts';
import { ItemPolicy, readListFile, type MissingPolicy } from './loader-rules.ts';
import { createRng, shuffleInPlace } from './random.ts';
import { datasetError, validateDataset } from './types.ts';
import type { Dataset, DatasetItem } from './types.ts';

/** The lists shipped with clip-decoder, used when a release folder lacks them. */
export const BUNDLED_CONCEPTS81 = fileURLToPath(new URL('./nus-wide/Concepts81.txt', import.meta.url));
export const BUNDLED_TAGLIST1K = fileURLToPath(new URL('./nus-wide/TagList1k.txt', import.meta.url));

export interface NusWideOptions {
  /** Image folder (default: <root>/Flickr). */
  imagesDir?: string;
  /** Image files that do not exist: error, drop, or do not check (default: 'error'). */
  missingFiles?: MissingPolicy;
  /** Share of the training images held out as validation for model selection (default 0.1; 0 for none). */
  valFraction?: number;
  /** Seed for the validation images and the pseudo-unseen labels. */
  seed?: number;
  /** Number of seen labels held out as pseudo-unseen on validation (default 81, like the unseen labels). */
  pseudoUnseen?: number;
  /** A pseudo-unseen label needs at least this many validation positives (default 10). */
  pseudoMinPositives?: number;
}

/** Sparse 0/1 matrix: the columns set in row r are indices[offsets[r] .. offsets[r+1]). */
export interface SparseRows {
  rows: number;
  offsets: Uint32Array;
  indices: Uint16Array;
}

/**
 * Reads a whitespace-separated 0/1 matrix with `cols` columns, streaming (AllTags1k.txt is 0.5 GB). Errors name
 * the file and line.
 */
export function readBinaryMatrix(path: string, cols: number): SparseRows {
  if (!existsSync(path)) throw new ClipDecoderError('DATASET_INVALID', `${path} does not exist`, path);
  const fd = openSync(path, 'r');
  const chunk = Buffer.allocUnsafe(1 << 24);
  let offsets = new Uint32Array(1 << 16);
  let indices = new Uint16Array(1 << 20);
  let nnz = 0;
  let rows = 0;
  let col = 0; // columns seen on the current line
  let inToken = false;
  let tokenValue = -1; // 0 or 1 for a one-character token, -1 for anything else
  let tokenLen = 0;
  let line = 1;
  let lineHasData = false;
  const problems: string[] = [];
  const fail = (msg: string) => {
    problems.push(`${path}:${line}: ${msg}`);
    if (problems.length >= 20) throw datasetError(path, problems);
  };
  const endToken = () => {
    if (tokenLen !== 1 || tokenValue < 0) fail(`value ${col + 1} is not 0 or 1`);
    else if (tokenValue === 1 && col < cols) {
      if (nnz === indices.length) {
        const grown = new Uint16Array(indices.length * 2);
        grown.set(indices);
        indices = grown;
      }
      indices[nnz++] = col;
    }
    col++;
    inToken = false;
  };
  const endLine = () => {
    if (inToken) endToken();
    if (lineHasData) {
      if (col !== cols) fail(`${col} values, expected ${cols}`);
      if (rows + 1 >= offsets.length) {
        const grown = new Uint32Array(offsets.length * 2);
        grown.set(offsets);
        offsets = grown;
      }
      rows++;
      offsets[rows] = nnz;
    }
    col = 0;
    lineHasData = false;
    line++;
  };
  try {
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      for (let i = 0; i < n; i++) {
        const c = chunk[i]!;
        if (c === 10)
          endLine(); // \n
        else if (c === 32 || c === 9 || c === 13) {
          if (inToken) endToken();
        } else {
          if (!inToken) {
            inToken = true;
            tokenLen = 0;
            tokenValue = -1;
            lineHasData = true;
          }
          tokenLen++;
          tokenValue = c === 48 ? 0 : c === 49 ? 1 : -1;
        }
      }
    }
    if (inToken || lineHasData) endLine();
  } finally {
    closeSync(fd);
  }
  if (problems.length > 0) throw datasetError(path, problems);
  return { rows, offsets: offsets.subarray(0, rows + 1), indices: indices.subarray(0, nnz) };
}

function rowCols(m: SparseRows, r: number): Uint16Array {
  return m.indices.subarray(m.offsets[r]!, m.offsets[r + 1]!);
}

function firstExisting(root: string, candidates: readonly string[]): string | undefined {
  for (const c of candidates) {
    const p = join(root, c);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** An image list: one path a line (backslashes made slashes). Ids are "<category>/<file>". */
function readImageList(path: string): string[] {
  const ids = readListFile(path, 'image list').map((l) => l.replace(/\\/g, '/'));
  const first = new Map<string, number>();
  const problems: string[] = [];
  ids.forEach((id, i) => {
    const prev = first.get(id);
    if (prev !== undefined) problems.push(`${path}:${i + 1}: duplicate image "${id}" (first on line ${prev + 1})`);
    else first.set(id, i);
  });
  if (problems.length > 0) throw datasetError(path, problems);
  return ids;
}

/** The last two path parts, "<category>/<file>", of an Imagelist.txt entry like C:\ImageData\Flickr\actor\0001_2124494179.jpg. */
const shortId = (p: string) => p.split('/').slice(-2).join('/');

/** A release folder: finds its files, and maps Imagelist.txt rows for the whole-dataset matrices (read once). */
class NusWideRelease {
  private allRow?: Map<string, number>;
  constructor(readonly root: string) {}

  find(candidates: readonly string[]): string | undefined {
    return firstExisting(this.root, candidates);
  }

  need(what: string, candidates: readonly string[]): string {
    const p = this.find(candidates);
    if (!p)
      throw new ClipDecoderError(
        'DATASET_INVALID',
        `NUS-WIDE: ${what} not found in ${this.root} (looked for ${candidates.join(', ')})`,
        this.root,
      );
    return p;
  }

  /** Rows of Imagelist.txt, by "<category>/<file>"; every train and test image (`all`) must have one. */
  allRows(all: readonly string[]): Map<string, number> {
    if (this.allRow) return this.allRow;
    const listPath = this.need('the full image list (for AllTags1k.txt / AllLabels)', [
      'ImageList/Imagelist.txt',
      'Imagelist.txt',
      'ImageList/ImageList.txt',
    ]);
    const list = readListFile(listPath, 'image list').map((l) => shortId(l.replace(/\\/g, '/')));
    const rows = new Map(list.map((id, i) => [id, i]));
    const missing = all.filter((id) => !rows.has(shortId(id)));
    if (missing.length > 0) throw datasetError(listPath, [`${missing.length} train/test image(s) are not in it, e.g. "${missing[0]}"`]);
    this.allRow = rows;
    return rows;
  }
}

function checkRows(m: SparseRows, path: string, want: number, listPath: string): void {
  if (m.rows !== want) throw datasetError(path, [`${m.rows} rows, but ${listPath} has ${want} images`]);
}

/** Tags and concepts, each listed once; the bundled copies stand in when the release folder lacks them. */
function readLabelLists(root: string, notes: string[]): { tags: string[]; concepts: string[]; conceptsPath: string } {
  const tagListPath = firstExisting(root, ['NUS_WID_Tags/TagList1k.txt', 'TagList1k.txt']) ?? BUNDLED_TAGLIST1K;
  const conceptsPath = firstExisting(root, ['ConceptsList/Concepts81.txt', 'Concepts81.txt']) ?? BUNDLED_CONCEPTS81;
  if (tagListPath === BUNDLED_TAGLIST1K) notes.push('TagList1k.txt not in the folder: used the copy bundled with clip-decoder');
  if (conceptsPath === BUNDLED_CONCEPTS81) notes.push('Concepts81.txt not in the folder: used the copy bundled with clip-decoder');
  const tags = readListFile(tagListPath, 'tag list');
  const concepts = readListFile(conceptsPath, 'concept list');
  for (const [list, path] of [
    [tags, tagListPath],
    [concepts, conceptsPath],
  ] as const) {
    const dup = list.find((t, i) => list.indexOf(t) !== i);
    if (dup) throw datasetError(path, [`label "${dup}" is listed twice`]);
  }
  return { tags, concepts, conceptsPath };
}

interface ImageLists {
  train: string[];
  test: string[];
  trainPath: string;
  testPath: string;
}

/** The tag columns set per image (train rows, then test rows), from the split matrices or AllTags1k.txt. */
function readTagRows(release: NusWideRelease, lists: ImageLists, tagCount: number): Uint16Array[] {
  const { train, test, trainPath, testPath } = lists;
  const all = [...train, ...test];
  const out: Uint16Array[] = new Array(all.length);
  const trainTags = release.find(['NUS_WID_Tags/Train_Tags1k.dat', 'Train_Tags1k.dat']);
  const testTags = release.find(['NUS_WID_Tags/Test_Tags1k.dat', 'Test_Tags1k.dat']);
  if (trainTags && testTags) {
    const a = readBinaryMatrix(trainTags, tagCount);
    checkRows(a, trainTags, train.length, trainPath);
    const b = readBinaryMatrix(testTags, tagCount);
    checkRows(b, testTags, test.length, testPath);
    for (let i = 0; i < train.length; i++) out[i] = rowCols(a, i);
    for (let i = 0; i < test.length; i++) out[train.length + i] = rowCols(b, i);
    return out;
  }
  const allTags = release.need('a tag matrix (Train_Tags1k.dat + Test_Tags1k.dat, or AllTags1k.txt)', [
    'NUS_WID_Tags/AllTags1k.txt',
    'AllTags1k.txt',
  ]);
  const m = readBinaryMatrix(allTags, tagCount);
  const rowOf = release.allRows(all);
  checkRows(m, allTags, rowOf.size, 'Imagelist.txt');
  all.forEach((id, i) => (out[i] = rowCols(m, rowOf.get(shortId(id))!)));
  return out;
}

/** The concepts (indices into Concepts81) per image, from the human-checked ground truth in any of its layouts. */
function readConceptRows(release: NusWideRelease, lists: ImageLists, concepts: readonly string[], conceptsPath: string): number[][] {
  const { train, test, trainPath, testPath } = lists;
  const all = [...train, ...test];
  const out: number[][] = all.map(() => []);
  const trainTestDir = release.find(['Groundtruth/TrainTestLabels', 'TrainTestLabels']);
  const allLabelsDir = release.find(['Groundtruth/AllLabels', 'AllLabels']);
  const allLabels81 = release.find(['AllLabels81.txt', 'Groundtruth/AllLabels81.txt']);
  if (trainTestDir && concepts.every((c) => existsSync(join(trainTestDir, `Labels_${c}_Train.txt`)))) {
    concepts.forEach((c, k) => {
      const a = readBinaryMatrix(join(trainTestDir, `Labels_${c}_Train.txt`), 1);
      checkRows(a, join(trainTestDir, `Labels_${c}_Train.txt`), train.length, trainPath);
      const b = readBinaryMatrix(join(trainTestDir, `Labels_${c}_Test.txt`), 1);
      checkRows(b, join(trainTestDir, `Labels_${c}_Test.txt`), test.length, testPath);
      for (let i = 0; i < train.length; i++) if (a.offsets[i + 1]! > a.offsets[i]!) out[i]!.push(k);
      for (let i = 0; i < test.length; i++) if (b.offsets[i + 1]! > b.offsets[i]!) out[train.length + i]!.push(k);
    });
  } else if (allLabelsDir && concepts.every((c) => existsSync(join(allLabelsDir, `Labels_${c}.txt`)))) {
    const rowOf = release.allRows(all);
    concepts.forEach((c, k) => {
      const path = join(allLabelsDir, `Labels_${c}.txt`);
      const m = readBinaryMatrix(path, 1);
      checkRows(m, path, rowOf.size, 'Imagelist.txt');
      all.forEach((id, i) => {
        const r = rowOf.get(shortId(id))!;
        if (m.offsets[r + 1]! > m.offsets[r]!) out[i]!.push(k);
      });
    });
  } else if (allLabels81) {
    const rowOf = release.allRows(all);
    const m = readBinaryMatrix(allLabels81, concepts.length);
    checkRows(m, allLabels81, rowOf.size, 'Imagelist.txt');
    all.forEach((id, i) => {
      for (const k of rowCols(m, rowOf.get(shortId(id))!)) out[i]!.push(k);
    });
  } else {
    throw new ClipDecoderError(
      'DATASET_INVALID',
      `NUS-WIDE: concept ground truth not found in ${release.root}: expected Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt and _Test.txt, Groundtruth/AllLabels/Labels_<concept>.txt, or AllLabels81.txt, for all ${concepts.length} concepts of ${basename(conceptsPath)}`,
      release.root,
    );
  }
  return out;
}

/** Model selection: validation images out of train, and seen labels held out as pseudo-unseen on them. */
function carveValidation(
  keptTrain: readonly string[],
  items: readonly DatasetItem[],
  seen: readonly string[],
  unseenCount: number,
  options: NusWideOptions,
): { val: Set<string>; pseudoUnseen: string[] } {
  const rng = createRng(options.seed ?? 0);
  const val = new Set(shuffleInPlace([...keptTrain], rng).slice(0, Math.round((options.valFraction ?? 0.1) * keptTrain.length)));
  const valCount = new Map<string, number>();
  for (const it of items) if (val.has(it.id)) for (const l of it.labels) valCount.set(l, (valCount.get(l) ?? 0) + 1);
  const pseudoCandidates = seen.filter((l) => (valCount.get(l) ?? 0) >= (options.pseudoMinPositives ?? 10));
  const pseudoUnseen = shuffleInPlace(pseudoCandidates, rng).slice(0, options.pseudoUnseen ?? unseenCount);
  pseudoUnseen.sort((x, y) => seen.indexOf(x) - seen.indexOf(y));
  return { val, pseudoUnseen };
}

export function loadNusWide(dir: string, options: NusWideOptions = {}): Dataset {
  const root = resolve(dir);
  if (!existsSync(root)) throw new ClipDecoderError('DATASET_INVALID', `NUS-WIDE folder ${root} does not exist`, root);
  const notes: string[] = [];
  const { tags, concepts, conceptsPath } = readLabelLists(root, notes);
  // Seen labels: the Flickr tags that are not concepts; isSeenCol maps a tag column to its seen index or -1.
  const conceptSet = new Set(concepts);
  const seen = tags.filter((t) => !conceptSet.has(t));
  const isSeenCol = new Int32Array(tags.length).fill(-1);
  let nextSeen = 0;
  tags.forEach((t, j) => {
    if (!conceptSet.has(t)) isSeenCol[j] = nextSeen++;
  });

  const release = new NusWideRelease(root);
  const trainPath = release.need('the training image list', ['ImageList/TrainImagelist.txt', 'TrainImagelist.txt']);
  const testPath = release.need('the test image list', ['ImageList/TestImagelist.txt', 'TestImagelist.txt']);
  const lists: ImageLists = { train: readImageList(trainPath), test: readImageList(testPath), trainPath, testPath };
  const inTrain = new Set(lists.train);
  const both = lists.test.find((id) => inTrain.has(id));
  if (both) throw datasetError(testPath, [`image "${both}" is in both the training and the test list`]);
  const all = [...lists.train, ...lists.test];
  const tagRows = readTagRows(release, lists, tags.length);
  const conceptRows = readConceptRows(release, lists, concepts, conceptsPath);

  // Items: image folder default Flickr/<category>/<file>. NUS-WIDE keeps images with no label (many have
  // none): only missing files are checked.
  const imagesDir = resolve(options.imagesDir ?? join(root, 'Flickr'));
  const items: DatasetItem[] = [];
  const dropped = new Set<string>();
  const missingProblems: string[] = [];
  const policy = new ItemPolicy({ empty: 'keep', missing: options.missingFiles ?? 'error' }, missingProblems);
  all.forEach((id, i) => {
    const labels: string[] = [];
    for (const j of tagRows[i]!) {
      const k = isSeenCol[j]!;
      if (k >= 0) labels.push(seen[k]!);
    }
    for (const k of conceptRows[i]!) labels.push(concepts[k]!);
    if (!policy.admit('', id, labels, join(imagesDir, id))) {
      dropped.add(id);
      return;
    }
    items.push({ id, file: id, labels }); // relative to root (the image folder)
  });
  if (missingProblems.length > 0) throw datasetError(imagesDir, missingProblems);
  notes.push(...policy.notes());

  const keptTrain = lists.train.filter((id) => !dropped.has(id));
  const { val, pseudoUnseen } = carveValidation(keptTrain, items, seen, concepts.length, options);
  const dataset: Dataset = {
    name: 'nus-wide',
    format: 'nus-wide',
    root: imagesDir,
    labels: [...seen, ...concepts],
    items,
    split: {
      train: keptTrain.filter((id) => !val.has(id)),
      val: keptTrain.filter((id) => val.has(id)),
      test: lists.test.filter((id) => !dropped.has(id)),
      seen,
      unseen: concepts,
      pseudoUnseen,
      seed: options.seed ?? 0,
    },
    notes,
  };
  validateDataset(dataset, root);
  return dataset;
}
