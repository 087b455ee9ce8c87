import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadDataset, detectDatasetKind } from '../src/data/load.ts';
import { loadLabelFile } from '../src/data/labelfile.ts';
import { loadCoco } from '../src/data/coco.ts';
import { loadNusWide, readBinaryMatrix } from '../src/data/nuswide.ts';
import { parseCsv } from '../src/data/csv.ts';
import { evaluationSet, trainingSet } from '../src/data/types.ts';
import { ClipDecoderError } from '../src/errors.ts';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'cd-data-'));
}
function write(path: string, text: string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  return path;
}
/** Asserts a DATASET_INVALID error whose message matches every pattern. */
function throwsDataset(fn: () => unknown, ...patterns: RegExp[]) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError, `expected ClipDecoderError, got ${e}`);
    assert.equal(e.code, 'DATASET_INVALID');
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

test('CSV parser: quotes, escaped quotes, line breaks inside quotes, CRLF, blank lines', () => {
  const recs = parseCsv('file,labels\r\n"a,1.jpg","cat|""odd"" dog"\r\n\r\nb.jpg,"x\ny"\n');
  assert.deepEqual(recs, [
    { line: 1, fields: ['file', 'labels'] },
    { line: 2, fields: ['a,1.jpg', 'cat|"odd" dog'] },
    { line: 4, fields: ['b.jpg', 'x\ny'] },
  ]);
});

test('folder + CSV: labels column, per-line split, vocabulary from labels.txt, unseen labels from a list', () => {
  const dir = tmp();
  for (const f of ['a.jpg', 'b.jpg', 'c.jpg']) write(join(dir, 'img', f), 'x');
  write(join(dir, 'labels.txt'), 'cat\ndog\nsofa\n');
  const csv = write(join(dir, 'labels.csv'), 'file,labels,split\nimg/a.jpg,cat|sofa,train\nimg/b.jpg,dog; cat,train\nimg/c.jpg,dog,test\n');
  const d = loadDataset(csv, { unseen: ['dog'] });
  assert.equal(d.format, 'csv');
  assert.deepEqual(d.labels, ['cat', 'sofa', 'dog']);
  assert.deepEqual(
    d.items.map((it) => [it.id, it.labels]),
    [
      ['img/a.jpg', ['cat', 'sofa']],
      ['img/b.jpg', ['dog', 'cat']],
      ['img/c.jpg', ['dog']],
    ],
  );
  assert.deepEqual(d.split.train, ['img/a.jpg', 'img/b.jpg']);
  assert.deepEqual(d.split.test, ['img/c.jpg']);
  const tr = trainingSet(d);
  assert.deepEqual(tr.labels, ['cat', 'sofa']); // the unseen "dog" never reaches training targets
  assert.deepEqual(Array.from(tr.targets), [1, 1, 1, 0]);
  const ev = evaluationSet(d);
  assert.deepEqual(ev.unseen, ['dog']);
  assert.deepEqual(Array.from(ev.targets), [0, 0, 1]);
});

test('folder + CSV: one 0/1 column per label', () => {
  const dir = tmp();
  write(join(dir, 'a.png'), 'x');
  write(join(dir, 'b.png'), 'x');
  const csv = write(join(dir, 'labels.csv'), 'image,cat,dog\na.png,1,0\nb.png,1,1\n');
  const d = loadLabelFile(csv);
  assert.deepEqual(d.labels, ['cat', 'dog']);
  assert.deepEqual(
    d.items.map((it) => it.labels),
    [['cat'], ['cat', 'dog']],
  );
  write(join(dir, 'bad.csv'), 'image,cat,dog\na.png,1,2\n');
  throwsDataset(() => loadLabelFile(join(dir, 'bad.csv')), /bad\.csv:2: column "dog" must be 0 or 1, got "2"/);
});

test('folder + JSONL: every problem is reported with file and line', () => {
  const dir = tmp();
  write(join(dir, 'a.jpg'), 'x');
  write(join(dir, 'b.jpg'), 'x');
  write(join(dir, 'labels.txt'), 'cat\ndog\n');
  const file = write(
    join(dir, 'labels.jsonl'),
    `${[
      '{"file": "a.jpg", "labels": ["cat"]}',
      '{"file": "a.jpg", "labels": ["dog"]}', // duplicate id (id defaults to file)
      '{"file": "missing.jpg", "labels": ["dog"]}', // no such file
      '{"file": "b.jpg", "labels": ["cat", "horse"]}', // unknown label
      '{"id": "e", "file": "b.jpg", "labels": []}', // empty label set
      'not json',
      '{"file": "b.jpg", "labels": "cat"}',
    ].join('\n')}\n`,
  );
  throwsDataset(
    () => loadLabelFile(file),
    /6 problems/,
    /labels\.jsonl:2: duplicate id "a\.jpg" \(first on line 1\)/,
    /labels\.jsonl:3: image file .*missing\.jpg does not exist/,
    /labels\.jsonl:4: unknown label "horse"/,
    /labels\.jsonl:5: image "b\.jpg" has no labels/,
    /labels\.jsonl:6: not valid JSON/,
    /labels\.jsonl:7: "labels" must be a list of strings/,
  );
});

test('folder + JSONL: empty label sets and missing files can be dropped or kept on request', () => {
  const dir = tmp();
  write(join(dir, 'a.jpg'), 'x');
  const file = write(
    join(dir, 'l.jsonl'),
    '{"file":"a.jpg","labels":["cat"]}\n{"file":"b.jpg","labels":[]}\n{"file":"c.jpg","labels":["cat"]}\n',
  );
  const d = loadLabelFile(file, { emptyLabels: 'drop', missingFiles: 'drop' });
  assert.deepEqual(
    d.items.map((it) => it.id),
    ['a.jpg'],
  );
  assert.ok(d.notes.some((n) => /1 image\(s\) without labels dropped/.test(n)));
  assert.ok(d.notes.some((n) => /1 image\(s\) whose file does not exist dropped/.test(n)));
  const kept = loadLabelFile(file, { emptyLabels: 'keep', missingFiles: 'ignore' });
  assert.equal(kept.items.length, 3);
  assert.deepEqual(kept.split.test, ['a.jpg', 'b.jpg', 'c.jpg']); // no split: everything is test
  assert.deepEqual(kept.split.seen, ['cat']); // no unseen list: every label is seen
});

test('manifest folder + split.json: split validated against the manifest', () => {
  const dir = tmp();
  write(
    join(dir, 'manifest.jsonl'),
    '{"id":"x1","file":"x1.png","labels":["a"],"style":"s"}\n{"id":"x2","file":"x2.png","labels":["b"]}\n',
  );
  const split = { seen: ['a'], unseen: ['b'], pseudoUnseen: [], train: ['x1'], val: [], test: ['x2'] };
  write(join(dir, 'split.json'), JSON.stringify(split));
  assert.equal(detectDatasetKind(dir), 'manifest');
  const d = loadDataset(dir, { missingFiles: 'ignore' });
  assert.equal(d.format, 'manifest');
  assert.deepEqual(d.items[0]!.meta, { style: 's' });
  assert.deepEqual(trainingSet(d).labels, ['a']);
  write(join(dir, 'split.json'), JSON.stringify({ ...split, test: ['x2', 'x9'], val: ['x1'] }));
  throwsDataset(() => loadDataset(dir, { missingFiles: 'ignore' }), /split "test" names image "x9"/, /"x1" is in both "train" and "val"/);
  write(join(dir, 'split.json'), JSON.stringify({ ...split, unseen: [], test: [] }));
  throwsDataset(() => loadDataset(dir, { missingFiles: 'ignore' }), /manifest\.jsonl:2: unknown label "b" \(not in .*split\.json\)/);
});

function cocoJson(): object {
  return {
    images: [
      { id: 1, file_name: '000001.jpg' },
      { id: 2, file_name: '000002.jpg' },
      { id: 3, file_name: '000003.jpg' },
    ],
    annotations: [
      { id: 10, image_id: 1, category_id: 18 },
      { id: 11, image_id: 1, category_id: 18 },
      { id: 12, image_id: 1, category_id: 1 },
      { id: 13, image_id: 2, category_id: 63 },
    ],
    categories: [
      { id: 1, name: 'person' },
      { id: 18, name: 'dog' },
      { id: 63, name: 'couch' },
    ],
  };
}

test('COCO: labels are the categories present; images without annotations dropped by default; default image folder', () => {
  const dir = tmp();
  const ann = write(join(dir, 'annotations', 'instances_val2017.json'), JSON.stringify(cocoJson()));
  for (const f of ['000001.jpg', '000002.jpg', '000003.jpg']) write(join(dir, 'val2017', f), 'x');
  const d = loadDataset(ann, { unseen: ['couch'] });
  assert.equal(d.format, 'coco');
  assert.equal(d.root, join(dir, 'val2017'));
  assert.deepEqual(d.labels, ['person', 'dog', 'couch']);
  assert.deepEqual(
    d.items.map((it) => [it.id, it.labels]),
    [
      ['000001.jpg', ['person', 'dog']],
      ['000002.jpg', ['couch']],
    ],
  );
  assert.ok(d.notes.some((n) => /1 image\(s\) without annotations dropped/.test(n)));
  assert.deepEqual(d.split.test, ['000001.jpg', '000002.jpg']);
  assert.deepEqual(d.split.unseen, ['couch']);
  const both = loadCoco([{ path: ann, part: 'train' }], { emptyLabels: 'keep' });
  assert.equal(both.split.train.length, 3);
});

test('COCO: broken references and duplicates are reported with their array index', () => {
  const dir = tmp();
  const bad = cocoJson() as { images: object[]; annotations: object[]; categories: object[] };
  bad.images.push({ id: 2, file_name: 'dup.jpg' });
  bad.annotations.push({ id: 14, image_id: 99, category_id: 1 }, { id: 15, image_id: 3, category_id: 7 });
  const ann = write(join(dir, 'instances_x.json'), JSON.stringify(bad));
  throwsDataset(
    () => loadCoco([{ path: ann, part: 'test' }], { missingFiles: 'ignore' }),
    /images\[3\]: duplicate image id 2/,
    /annotations\[4\]: image_id 99 is not in "images"/,
    /annotations\[5\]: category_id 7 is not in "categories"/,
  );
  throwsDataset(
    () => loadCoco([{ path: write(join(dir, 'instances_y.json'), JSON.stringify(cocoJson())), part: 'test' }]),
    /file .*000001\.jpg does not exist/,
  );
});

test('binary matrix reader: sparse rows, errors with line numbers', () => {
  const dir = tmp();
  const m = readBinaryMatrix(write(join(dir, 'm.txt'), '0 1 0\n1\t1\t0\t\n0 0 0\n'), 3);
  assert.equal(m.rows, 3);
  assert.deepEqual(Array.from(m.offsets), [0, 1, 3, 3]);
  assert.deepEqual(Array.from(m.indices), [1, 0, 1]);
  throwsDataset(
    () => readBinaryMatrix(write(join(dir, 'b.txt'), '0 1 0\n0 2 0\n0 1\n'), 3),
    /b\.txt:2: value 2 is not 0 or 1/,
    /b\.txt:3: 2 values, expected 3/,
  );
});

/** A small NUS-WIDE release: 4 tags (2 of them concepts), 3 concepts, 3 train + 2 test images. */
function writeNus(layout: 'traintest' | 'all' | 'all81'): string {
  const root = tmp();
  const train = ['actor\\0001_11.jpg', 'airport\\0002_12.jpg', 'beach\\0003_13.jpg'];
  const test = ['beach\\0004_14.jpg', 'actor\\0005_15.jpg'];
  const all = ['actor\\0005_15.jpg', 'actor\\0001_11.jpg', 'airport\\0002_12.jpg', 'beach\\0003_13.jpg', 'beach\\0004_14.jpg'].map(
    (p) => `C:\\ImageData\\Flickr\\${p}`,
  );
  write(join(root, 'ImageList', 'TrainImagelist.txt'), `${train.join('\r\n')}\r\n`);
  write(join(root, 'ImageList', 'TestImagelist.txt'), `${test.join('\r\n')}\r\n`);
  write(join(root, 'ImageList', 'Imagelist.txt'), `${all.join('\r\n')}\r\n`);
  write(join(root, 'NUS_WID_Tags', 'TagList1k.txt'), 'sky\nbeach\nblue\nairport\n');
  write(join(root, 'ConceptsList', 'Concepts81.txt'), 'airport\nbeach\nperson\n');
  // tags per image (columns sky beach blue airport)
  const tagsOf: Record<string, string> = {
    '0001_11': '1 0 1 0',
    '0002_12': '0 0 0 1',
    '0003_13': '1 1 0 0',
    '0004_14': '0 1 1 0',
    '0005_15': '0 0 0 0',
  };
  // concept ground truth (airport beach person)
  const gtOf: Record<string, number[]> = {
    '0001_11': [0, 0, 1],
    '0002_12': [1, 0, 0],
    '0003_13': [0, 1, 1],
    '0004_14': [0, 1, 0],
    '0005_15': [0, 0, 1],
  };
  const key = (p: string) => p.split('\\').pop()!.replace('.jpg', '');
  if (layout === 'traintest') {
    write(join(root, 'NUS_WID_Tags', 'Train_Tags1k.dat'), `${train.map((p) => `${tagsOf[key(p)]!.replace(/ /g, '\t')}\t`).join('\n')}\n`);
    write(join(root, 'NUS_WID_Tags', 'Test_Tags1k.dat'), `${test.map((p) => `${tagsOf[key(p)]!.replace(/ /g, '\t')}\t`).join('\n')}\n`);
    ['airport', 'beach', 'person'].forEach((c, k) => {
      write(join(root, 'Groundtruth', 'TrainTestLabels', `Labels_${c}_Train.txt`), `${train.map((p) => gtOf[key(p)]![k]).join('\n')}\n`);
      write(join(root, 'Groundtruth', 'TrainTestLabels', `Labels_${c}_Test.txt`), `${test.map((p) => gtOf[key(p)]![k]).join('\n')}\n`);
    });
  } else {
    write(join(root, 'NUS_WID_Tags', 'AllTags1k.txt'), `${all.map((p) => tagsOf[key(p)]).join(' \n')} \n`);
    if (layout === 'all') {
      ['airport', 'beach', 'person'].forEach((c, k) =>
        write(join(root, 'Groundtruth', 'AllLabels', `Labels_${c}.txt`), `${all.map((p) => gtOf[key(p)]![k]).join('\n')}\n`),
      );
    } else {
      write(join(root, 'AllLabels81.txt'), `${all.map((p) => gtOf[key(p)]!.join(' ')).join('\n')}\n`);
    }
  }
  return root;
}

test('NUS-WIDE: the three release layouts load to the same dataset; seen labels are tags minus concepts', () => {
  const loaded = (['traintest', 'all', 'all81'] as const).map((layout) => {
    const root = writeNus(layout);
    assert.equal(detectDatasetKind(root), 'nus-wide');
    return loadNusWide(root, { missingFiles: 'ignore', valFraction: 0 });
  });
  for (const d of loaded) {
    assert.deepEqual(d.split.seen, ['sky', 'blue']);
    assert.deepEqual(d.split.unseen, ['airport', 'beach', 'person']);
    assert.deepEqual(d.split.train, ['actor/0001_11.jpg', 'airport/0002_12.jpg', 'beach/0003_13.jpg']);
    assert.deepEqual(d.split.test, ['beach/0004_14.jpg', 'actor/0005_15.jpg']);
    const byId = Object.fromEntries(d.items.map((it) => [it.id, it.labels]));
    // The "airport" tag of image 2 is dropped (concept columns come from ground truth only).
    assert.deepEqual(byId, {
      'actor/0001_11.jpg': ['sky', 'blue', 'person'],
      'airport/0002_12.jpg': ['airport'],
      'beach/0003_13.jpg': ['sky', 'beach', 'person'],
      'beach/0004_14.jpg': ['blue', 'beach'],
      'actor/0005_15.jpg': ['person'],
    });
    assert.deepEqual(trainingSet(d).labels, ['sky', 'blue']);
  }
});

test('NUS-WIDE: the bundled lists give the standard 925 seen / 81 unseen split; validation carved from train', () => {
  const root = tmp();
  const train = Array.from({ length: 30 }, (_, i) => `c\\${i}.jpg`);
  const test = Array.from({ length: 10 }, (_, i) => `c\\t${i}.jpg`);
  write(join(root, 'ImageList', 'TrainImagelist.txt'), `${train.join('\n')}\n`);
  write(join(root, 'ImageList', 'TestImagelist.txt'), `${test.join('\n')}\n`);
  const row = (i: number) => Array.from({ length: 1000 }, (_, j) => (j % 30 === i % 30 || j < 12 ? 1 : 0)).join('\t');
  write(join(root, 'NUS_WID_Tags', 'Train_Tags1k.dat'), `${train.map((_, i) => row(i)).join('\n')}\n`);
  write(join(root, 'NUS_WID_Tags', 'Test_Tags1k.dat'), `${test.map((_, i) => row(i)).join('\n')}\n`);
  write(join(root, 'AllLabels81.txt'), 'x\n'); // not used: TrainTestLabels below take precedence
  const concepts = readNusConcepts();
  for (const c of concepts) {
    write(
      join(root, 'Groundtruth', 'TrainTestLabels', `Labels_${c}_Train.txt`),
      `${train.map((_, i) => (i % 3 === 0 ? 1 : 0)).join('\n')}\n`,
    );
    write(join(root, 'Groundtruth', 'TrainTestLabels', `Labels_${c}_Test.txt`), `${test.map(() => 0).join('\n')}\n`);
  }
  const d = loadNusWide(root, { missingFiles: 'ignore', valFraction: 0.2, seed: 3, pseudoUnseen: 5, pseudoMinPositives: 1 });
  assert.equal(d.split.seen.length, 925);
  assert.equal(d.split.unseen.length, 81);
  assert.equal(d.labels.length, 1006);
  assert.ok(d.notes.some((n) => /TagList1k\.txt not in the folder/.test(n)));
  assert.equal(d.split.train.length + d.split.val.length, 30);
  assert.equal(d.split.val.length, 6);
  assert.equal(d.split.pseudoUnseen.length, 5);
  const select = trainingSet(d, 'select');
  assert.equal(select.labels.length, 920);
  assert.ok(!select.labels.some((l) => d.split.pseudoUnseen.includes(l) || d.split.unseen.includes(l)));
  assert.equal(trainingSet(d, 'final').ids.length, 30);
  // Same seed, same validation images.
  assert.deepEqual(
    loadNusWide(root, { missingFiles: 'ignore', valFraction: 0.2, seed: 3, pseudoUnseen: 5, pseudoMinPositives: 1 }).split.val,
    d.split.val,
  );
});

test('NUS-WIDE: row counts, values and missing ground truth are checked', () => {
  const root = writeNus('traintest');
  write(join(root, 'NUS_WID_Tags', 'Test_Tags1k.dat'), '0\t1\t0\t0\n');
  throwsDataset(
    () => loadNusWide(root, { missingFiles: 'ignore' }),
    /Test_Tags1k\.dat: 1 problem[\s\S]*1 rows, but .*TestImagelist\.txt has 2 images/,
  );
  const root2 = writeNus('traintest');
  write(join(root2, 'Groundtruth', 'TrainTestLabels', 'Labels_person_Test.txt'), '1\n3\n');
  throwsDataset(() => loadNusWide(root2, { missingFiles: 'ignore' }), /Labels_person_Test\.txt:2: value 1 is not 0 or 1/);
  const root3 = writeNus('all81');
  write(join(root3, 'AllLabels81.txt'), '0 0\n');
  throwsDataset(() => loadNusWide(root3, { missingFiles: 'ignore' }), /AllLabels81\.txt:1: 2 values, expected 3/);
  const root4 = writeNus('traintest');
  assert.throws(() => loadNusWide(root4), /does not exist/); // images are checked unless told not to
});

function readNusConcepts(): string[] {
  return readFileSync(new URL('../src/data/nus-wide/Concepts81.txt', import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
}
