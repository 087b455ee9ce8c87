// Format (b): COCO instances JSON (instances_train2017.json, instances_val2017.json, ...). An image's labels are
// the names of the categories that have at least one annotation on it. Several files can be loaded as the
// parts of one dataset (train file + val file); image ids are the file names.
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { ItemPolicy, resolveUnseen, type EmptyPolicy, type MissingPolicy } from './loader-rules.ts';
import { datasetError, validateDataset } from './types.ts';
import type { Dataset, DatasetItem, SplitPart } from './types.ts';

export interface CocoFile {
  path: string;
  part: SplitPart;
  /** Image folder (default: the folder named after the file, e.g. ../val2017 for annotations/instances_val2017.json). */
  imagesDir?: string;
}

export interface CocoOptions {
  unseen?: string | readonly string[];
  /** Images without annotations: dropped (default), kept with no labels, or an error. */
  emptyLabels?: EmptyPolicy;
  missingFiles?: MissingPolicy;
}

/** COCO's usual layout: annotations/instances_val2017.json describes images in val2017/. */
export function defaultCocoImagesDir(path: string): string {
  const m = /instances_(\w+)\.json$/.exec(basename(path));
  if (m) {
    for (const candidate of [join(dirname(path), '..', m[1]!), join(dirname(path), m[1]!)])
      if (existsSync(candidate)) return resolve(candidate);
  }
  return resolve(dirname(path));
}

interface CocoJson {
  images?: unknown;
  annotations?: unknown;
  categories?: unknown;
}

export function loadCoco(files: readonly CocoFile[], options: CocoOptions = {}): Dataset {
  if (files.length === 0) throw new ClipDecoderError('INPUT_INVALID', 'no COCO annotation file given', 'coco');
  const items: DatasetItem[] = [];
  const parts: Record<SplitPart, string[]> = { train: [], val: [], test: [] };
  const notes: string[] = [];
  let vocabulary: string[] | undefined;
  // All files share one root; each item's file is relative to it (absolute when folders differ).
  const dirs = files.map((f) => resolve(f.imagesDir ?? defaultCocoImagesDir(f.path)));
  const root = dirs.every((d) => d === dirs[0]) ? dirs[0]! : '/';
  const seenIds = new Map<string, string>();

  files.forEach((f, fi) => {
    const path = resolve(f.path);
    if (!existsSync(path)) throw new ClipDecoderError('DATASET_INVALID', `COCO annotation file ${path} does not exist`, path);
    let json: CocoJson;
    try {
      json = JSON.parse(readFileSync(path, 'utf8')) as CocoJson;
    } catch (e) {
      throw new ClipDecoderError('DATASET_INVALID', `${path} is not valid JSON: ${(e as Error).message}`, path);
    }
    const problems: string[] = [];
    if (!Array.isArray(json.images) || !Array.isArray(json.annotations) || !Array.isArray(json.categories)) {
      throw datasetError(path, ['not a COCO instances file: "images", "annotations" and "categories" must all be lists']);
    }
    // Categories: id -> name; names are the labels, in file order.
    const catName = new Map<number, string>();
    const names: string[] = [];
    json.categories.forEach((c: unknown, i: number) => {
      const cat = c as { id?: unknown; name?: unknown };
      if (typeof cat.id !== 'number' || typeof cat.name !== 'string' || cat.name.trim() === '') {
        problems.push(`${path}: categories[${i}]: needs a numeric "id" and a non-empty "name"`);
        return;
      }
      if (catName.has(cat.id)) problems.push(`${path}: categories[${i}]: duplicate category id ${cat.id}`);
      if (names.includes(cat.name)) problems.push(`${path}: categories[${i}]: duplicate category name "${cat.name}"`);
      catName.set(cat.id, cat.name);
      names.push(cat.name);
    });
    if (vocabulary === undefined) vocabulary = names;
    else if (vocabulary.join('\n') !== names.join('\n')) problems.push(`${path}: its categories differ from those of ${files[0]!.path}`);

    const imageFile = new Map<number, string>();
    const labelsOf = new Map<number, Set<string>>();
    const order: number[] = [];
    json.images.forEach((im: unknown, i: number) => {
      const img = im as { id?: unknown; file_name?: unknown };
      if (typeof img.id !== 'number' || typeof img.file_name !== 'string' || img.file_name === '') {
        problems.push(`${path}: images[${i}]: needs a numeric "id" and a "file_name"`);
        return;
      }
      if (imageFile.has(img.id)) {
        problems.push(`${path}: images[${i}]: duplicate image id ${img.id}`);
        return;
      }
      const other = seenIds.get(img.file_name);
      if (other !== undefined) {
        problems.push(`${path}: images[${i}]: duplicate image "${img.file_name}" (also in ${other})`);
        return;
      }
      seenIds.set(img.file_name, path);
      imageFile.set(img.id, img.file_name);
      labelsOf.set(img.id, new Set());
      order.push(img.id);
    });
    json.annotations.forEach((a: unknown, i: number) => {
      const ann = a as { image_id?: unknown; category_id?: unknown };
      const labels = typeof ann.image_id === 'number' ? labelsOf.get(ann.image_id) : undefined;
      if (!labels) {
        problems.push(`${path}: annotations[${i}]: image_id ${JSON.stringify(ann.image_id)} is not in "images"`);
        return;
      }
      const name = typeof ann.category_id === 'number' ? catName.get(ann.category_id) : undefined;
      if (name === undefined) {
        problems.push(`${path}: annotations[${i}]: category_id ${JSON.stringify(ann.category_id)} is not in "categories"`);
        return;
      }
      labels.add(name);
    });
    const policy = new ItemPolicy(
      {
        empty: options.emptyLabels ?? 'drop',
        missing: options.missingFiles ?? 'error',
        lacks: 'annotations',
        missingHint: 'pass the image folder',
      },
      problems,
    );
    for (const id of order) {
      const fileName = imageFile.get(id)!;
      const labels = [...labelsOf.get(id)!].sort((x, y) => names.indexOf(x) - names.indexOf(y));
      const abs = join(dirs[fi]!, fileName);
      if (!policy.admit(`${path}: image ${id}`, fileName, labels, abs)) continue;
      items.push({ id: fileName, file: root === '/' ? abs : fileName, labels, meta: { cocoId: id } });
      parts[f.part].push(fileName);
    }
    if (problems.length > 0) throw datasetError(path, problems);
    notes.push(...policy.notes(`${basename(path)}: `));
  });

  const labels = vocabulary ?? [];
  const unseen = resolveUnseen(options.unseen, labels) ?? [];
  const unknown = unseen.filter((l) => !labels.includes(l));
  if (unknown.length > 0)
    throw datasetError(
      '--unseen',
      unknown.map((l) => `unseen label "${l}" is not a COCO category here`),
    );
  const unseenSet = new Set(unseen);
  const dataset: Dataset = {
    name: basename(files[0]!.path).replace(/\.json$/, ''),
    format: 'coco',
    root,
    labels: [...labels.filter((l) => !unseenSet.has(l)), ...unseen],
    items,
    split: { ...parts, seen: labels.filter((l) => !unseenSet.has(l)), unseen, pseudoUnseen: [] },
    notes,
  };
  validateDataset(dataset, files.map((f) => f.path).join(', '));
  return dataset;
}
