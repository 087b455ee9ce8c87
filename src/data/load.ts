// One entry point for every dataset format: a clip-decoder dataset folder (manifest.jsonl + split.json), a CSV or
// JSONL label file (or a folder holding labels.csv / labels.jsonl), a COCO instances JSON, or a NUS-WIDE release
// folder. The format is recognised from what is there, or named explicitly.
import { existsSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { loadCoco } from './coco.ts';
import { loadLabelFile } from './labelfile.ts';
import type { EmptyPolicy, MissingPolicy } from './loader-rules.ts';
import { MANIFEST_FILE } from './manifest.ts';
import { loadNusWide } from './nuswide.ts';
import type { Dataset, SplitPart } from './types.ts';

export type DatasetKind = 'auto' | 'manifest' | 'csv' | 'jsonl' | 'coco' | 'nus-wide';

export interface DatasetLoadOptions {
  format?: DatasetKind;
  imagesDir?: string;
  split?: string;
  vocabulary?: string;
  unseen?: string | readonly string[];
  emptyLabels?: EmptyPolicy;
  missingFiles?: MissingPolicy;
  /** COCO: which part the file's images are (default test). */
  cocoPart?: SplitPart;
  seed?: number;
  valFraction?: number;
}

const LABEL_FILES = [MANIFEST_FILE, 'labels.jsonl', 'labels.csv', 'labels.tsv'];

/** What `path` holds, judged from its contents. */
export function detectDatasetKind(path: string): Exclude<DatasetKind, 'auto'> {
  const p = resolve(path);
  if (!existsSync(p)) throw new ClipDecoderError('DATASET_INVALID', `dataset ${p} does not exist`, p);
  if (statSync(p).isDirectory()) {
    if (existsSync(join(p, MANIFEST_FILE))) return 'manifest';
    if (['ImageList', 'NUS_WID_Tags', 'TrainImagelist.txt', 'Groundtruth'].some((f) => existsSync(join(p, f)))) return 'nus-wide';
    if (existsSync(join(p, 'labels.jsonl'))) return 'jsonl';
    if (existsSync(join(p, 'labels.csv')) || existsSync(join(p, 'labels.tsv'))) return 'csv';
    throw new ClipDecoderError(
      'DATASET_INVALID',
      `${p}: not a dataset folder clip-decoder knows (expected ${LABEL_FILES.join(', ')}, or a NUS-WIDE release with ImageList/); pass the label file itself or --format`,
      p,
    );
  }
  const ext = extname(p).toLowerCase();
  if (ext === '.json') return 'coco';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.csv' || ext === '.tsv') return 'csv';
  throw new ClipDecoderError('DATASET_INVALID', `${p}: unknown dataset file type "${ext}" (use .csv, .tsv, .jsonl, or a COCO .json)`, p);
}

export function loadDataset(path: string, options: DatasetLoadOptions = {}): Dataset {
  const kind = !options.format || options.format === 'auto' ? detectDatasetKind(path) : options.format;
  const p = resolve(path);
  const isDir = existsSync(p) && statSync(p).isDirectory();
  switch (kind) {
    case 'nus-wide':
      return loadNusWide(p, {
        imagesDir: options.imagesDir,
        missingFiles: options.missingFiles,
        seed: options.seed,
        valFraction: options.valFraction,
      });
    case 'coco':
      return loadCoco([{ path: p, part: options.cocoPart ?? 'test', imagesDir: options.imagesDir }], {
        unseen: options.unseen,
        emptyLabels: options.emptyLabels,
        missingFiles: options.missingFiles,
      });
    default: {
      let file = p;
      if (isDir) {
        const found = LABEL_FILES.map((f) => join(p, f)).find((f) => existsSync(f));
        if (!found) throw new ClipDecoderError('DATASET_INVALID', `${p} has none of ${LABEL_FILES.join(', ')}`, p);
        file = found;
      }
      return loadLabelFile(file, {
        imagesDir: options.imagesDir,
        split: options.split,
        vocabulary: options.vocabulary,
        unseen: options.unseen,
        emptyLabels: options.emptyLabels,
        missingFiles: options.missingFiles,
      });
    }
  }
}
