// EmojiScenes leak tests and builder behaviour: P and B disjoint by emoji and by drawing, no test emoji in a
// train or validation scene, the test style nowhere else, every unseen label taught by P and never a training
// target, the same split from the same seed; option errors name the flag; a small build loads, a different build
// is refused without --force, and a build killed midway leaves no manifest and completes on a rerun.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildEmojiScenes, planEmojiScenes, resolveScenesOptions, sceneCaption } from '../src/data/emoji/scenes.ts';
import type { EmojiScenesPlan } from '../src/data/emoji/scenes.ts';
import { svgHash } from '../src/data/emoji/sources.ts';
import { loadDataset } from '../src/data/load.ts';
import { trainingSet } from '../src/data/types.ts';
import { ClipDecoderError } from '../src/errors.ts';

const SMALL = { trainScenes: 300, valScenes: 60, testScenes: 120, styleScenes: 40, pretrainScenes: 200 };
let cached: EmojiScenesPlan | undefined;
const plan = () => (cached ??= planEmojiScenes(SMALL));

test('P and B are disjoint by emoji, by family (gendered variants) and by drawing in every style', () => {
  const { pools, emojiPlan } = plan();
  const P = new Set(pools.pretrain);
  const B = new Set(pools.benchmark);
  assert.equal(P.size + B.size, emojiPlan.pool.length);
  for (const k of B) assert.ok(!P.has(k), `${k} is in P and B`);
  assert.ok(P.size > 600 && B.size > 600, `P ${P.size}, B ${B.size}`);

  const byHex = new Map(emojiPlan.pool.map((e) => [e.hexcode, e.key]));
  const side = (hex: string) => (P.has(byHex.get(hex)!) ? 'P' : 'B');
  // person / man / woman bowing, and person / man / woman health worker, stay together
  for (const group of [
    ['1F647', '1F647-200D-2642-FE0F', '1F647-200D-2640-FE0F'],
    ['1F9D1-200D-2695-FE0F', '1F468-200D-2695-FE0F', '1F469-200D-2695-FE0F'],
  ]) {
    assert.equal(new Set(group.map(side)).size, 1, group.join(' '));
  }

  const drawingsOf = (keys: Set<string>) => {
    const out = new Map<string, string>();
    for (const s of emojiPlan.styles)
      for (const k of keys) if (s.iconOf.has(k)) out.set(svgHash(s.svg(s.iconOf.get(k)!)), `${s.name}:${k}`);
    return out;
  };
  const pDrawings = drawingsOf(P);
  assert.equal(emojiPlan.styles.length, 8);
  for (const [h, what] of drawingsOf(B)) assert.ok(!pDrawings.has(h), `B drawing ${what} is also P's ${pDrawings.get(h)}`);
});

test('no test emoji (nor its family) in a train or validation scene; P scenes hold P emoji; the test style only in test', () => {
  const p = plan();
  const { familyOf } = p.pools.families;
  const testFamilies = new Set(p.parts.test.map((k) => familyOf.get(k)!));
  const valFamilies = new Set(p.parts.val.map((k) => familyOf.get(k)!));
  const P = new Set(p.pools.pretrain);
  const style = p.options.testStyle;
  let styleMembers = 0;
  for (const s of p.scenes) {
    for (const m of s.members) {
      const fam = familyOf.get(m.key)!;
      if (s.part !== 'test') {
        assert.ok(!testFamilies.has(fam), `${s.id} holds test emoji ${m.name}`);
        assert.notEqual(m.style, style, `${s.id} draws ${m.name} in the test-only style`);
      }
      if (s.part === 'train') assert.ok(!valFamilies.has(fam), `${s.id} holds validation emoji ${m.name}`);
      if (s.part === 'test') assert.ok(testFamilies.has(fam), `${s.id} holds a non-test emoji ${m.name}`);
      assert.ok(!P.has(m.key), `${s.id} holds P emoji ${m.name}`);
      if (s.subset === 'style-transfer') {
        assert.equal(m.style, style);
        styleMembers++;
      } else assert.notEqual(m.style, style, `${s.id}: ${m.name} in ${m.style}`);
    }
  }
  assert.ok(styleMembers > 0);
  for (const s of p.pretrain)
    for (const m of s.members) {
      assert.ok(P.has(m.key), `${s.id} holds B emoji ${m.name}`);
      assert.notEqual(m.style, style);
    }
  assert.ok(!p.trainStyles.includes(style) && !p.trainStyles.some((x) => x.startsWith('fluent')));
  // single-emoji subset: the same parts, the test style in test only
  const partOf = new Map<string, string>();
  for (const part of ['train', 'val', 'test'] as const) for (const id of p.singleSplit[part]) partOf.set(id, part);
  for (const it of p.singles) if (it.meta!.style === style) assert.equal(partOf.get(it.id), 'test', it.id);
});

test('every unseen label is taught by ≥ 10 P captions and is never a training target', () => {
  const p = plan();
  const { labeling } = p.emojiPlan;
  const styles = p.emojiPlan.styles.filter((s) => p.trainStyles.includes(s.name));
  assert.ok(p.split.unseen.length >= 40, `${p.split.unseen.length} unseen labels`);
  for (const l of p.split.unseen) {
    // recount: P emoji × pretraining styles drawing it, whose caption words (the EmojiTags labels) carry l
    let captions = 0;
    for (const k of p.pools.pretrain)
      if (labeling.emojiLabels.get(k)!.includes(l)) captions += styles.filter((s) => s.iconOf.has(k)).length;
    assert.ok(captions >= 10, `unseen ${l}: ${captions} P captions`);
    assert.equal(p.pools.teach.get(l)!.captions, captions, l);
    assert.ok(
      p.scenes.some((s) => s.part === 'test' && s.labels.includes(l)),
      `unseen ${l} has no test scene`,
    );
  }
  for (const concept of ['dog', 'cat', 'bird', 'flower', 'car']) assert.ok(p.split.unseen.includes(concept), concept);
  const d = {
    name: 'scenes',
    format: 'manifest' as const,
    root: '',
    labels: [...p.split.seen, ...p.split.unseen],
    items: p.scenes.map((s) => ({ id: s.id, file: s.file, labels: s.labels })),
    split: p.split,
    notes: [],
  };
  const unseen = new Set(p.split.unseen);
  assert.ok(!trainingSet(d, 'final').labels.some((l) => unseen.has(l)));
  const select = trainingSet(d, 'select');
  assert.ok(!select.labels.some((l) => unseen.has(l) || p.split.pseudoUnseen.includes(l)));
  assert.ok(p.split.pseudoUnseen.length >= 30);
});

test('the same seed gives the same pools, split and scenes (fewer scenes: a prefix); another seed differs', () => {
  const a = plan();
  const b = planEmojiScenes({ ...SMALL, trainScenes: 100, pretrainScenes: 0, styleScenes: 0 });
  assert.deepEqual(b.pools.pretrain, a.pools.pretrain);
  assert.deepEqual(b.parts, a.parts);
  assert.deepEqual([b.split.seen, b.split.unseen, b.split.pseudoUnseen], [a.split.seen, a.split.unseen, a.split.pseudoUnseen]);
  const train = (p: EmojiScenesPlan) => p.scenes.filter((s) => s.part === 'train');
  assert.deepEqual(train(b), train(a).slice(0, 100));
  assert.deepEqual(
    b.scenes.filter((s) => s.part === 'test'),
    a.scenes.filter((s) => s.part === 'test' && s.subset === 'scene'),
  );
  const c = planEmojiScenes({ ...SMALL, seed: 1, trainScenes: 10 });
  assert.notDeepEqual(c.pools.pretrain, a.pools.pretrain);
});

test('scene layout: 1-4 objects, mostly several, boxes inside the canvas, small overlaps, varied backgrounds', () => {
  const p = plan();
  const counts = [0, 0, 0, 0, 0];
  const kinds = new Set<string>();
  for (const s of p.scenes) {
    counts[s.members.length]!++;
    kinds.add(s.spec.background.kind);
    for (const m of s.members) {
      const [x, y, side] = m.box;
      assert.ok(x >= 0 && y >= 0 && x + side <= 1 + 1e-9 && y + side <= 1 + 1e-9 && side >= 0.34 - 1e-9, `${s.id}: box ${m.box}`);
    }
  }
  assert.equal(counts[0], 0);
  assert.ok(counts[2]! + counts[3]! + counts[4]! > 0.8 * p.scenes.length && counts[1]! > 0, counts.join(','));
  assert.equal(kinds.size, 6);
  assert.equal(
    sceneCaption([
      { name: 'Pizza', box: [0.5] },
      { name: 'dog', box: [0.1] },
      { name: 'apple', box: [0.3] },
    ]),
    'a dog, an apple and a pizza',
  );
});

test('builder options are validated: a one-line error naming the flag', () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ size: 0 }, '--size'],
    [{ size: 64.5 }, '--size'],
    [{ seed: -1 }, '--seed'],
    [{ trainScenes: 0 }, '--train-scenes'],
    [{ valScenes: Number.NaN }, '--val-scenes'],
    [{ testScenes: 2.5 }, '--test-scenes'],
    [{ styleScenes: -3 }, '--style-scenes'],
    [{ pretrainScenes: 1e9 }, '--pretrain-scenes'],
    [{ benchmarkFraction: 1 }, '--benchmark-fraction'],
    [{ testFraction: 0 }, '--test-fraction'],
    [{ valFraction: 1.2 }, '--val-fraction'],
    [{ maxOverlap: 1 }, '--max-overlap'],
    [{ minTeach: 0 }, '--min-teach'],
    [{ testStyle: 'nope' }, '--test-style'],
    [{ testStyle: 'fluent-emoji-flat' }, '--test-style'],
    [{ minPositives: 0 }, '--min-positives'],
    [{ singleStyles: ['fluent-emoji'] }, '--single-styles'],
    [{ singleStyles: ['nope'] }, '--single-styles'],
  ];
  for (const [opts, flag] of cases) {
    assert.throws(
      () => resolveScenesOptions(opts),
      (e: unknown) => {
        assert.ok(e instanceof ClipDecoderError && e.code === 'BAD_PARAMETER', String(e));
        assert.ok(e.message.startsWith(flag) && !e.message.includes('\n'), e.message);
        return true;
      },
      JSON.stringify(opts),
    );
  }
  assert.equal(resolveScenesOptions({}).size, 128);
});

const TINY = {
  size: 32,
  trainScenes: 12,
  valScenes: 4,
  testScenes: 6,
  styleScenes: 3,
  pretrainScenes: 3,
  singleStyles: ['noto', 'fxemoji'],
};

test('a small build loads as a dataset (scenes and single subset), with member boxes; another build is refused unless --force', async () => {
  const out = mkdtempSync(join(tmpdir(), 'cd-scenes-'));
  try {
    const r = await buildEmojiScenes({ out, ...TINY });
    const d = loadDataset(out);
    assert.equal(d.items.length, 12 + 4 + 6 + 3);
    assert.deepEqual([d.split.train.length, d.split.val.length, d.split.test.length], [12, 4, 9]);
    assert.equal(d.split.unseen.length, r.stats.labels.unseen);
    const line = JSON.parse(readFileSync(join(out, 'manifest.jsonl'), 'utf8').split('\n')[0]!) as {
      members: { box: number[]; style: string; hexcode: string }[];
      objects: number;
      labels: string[];
    };
    assert.equal(line.members.length, line.objects);
    for (const m of line.members) assert.ok(m.box.length === 4 && m.box[0]! + m.box[2]! <= 32 && m.box[2]! >= 10, JSON.stringify(m));
    const png = readFileSync(join(out, d.items[0]!.file));
    assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [32, 32]);
    const single = loadDataset(join(out, 'single'));
    assert.ok(
      single.split.test.length > 200 && single.split.train.length > 400,
      `${single.split.train.length} / ${single.split.test.length}`,
    );
    const fx = single.items.filter((it) => it.meta!.style === 'fxemoji').map((it) => it.id);
    const singleTest = new Set(single.split.test);
    assert.ok(fx.length > 0 && fx.every((id) => singleTest.has(id)));
    assert.deepEqual(single.split.unseen, d.split.unseen);
    const pools = JSON.parse(readFileSync(join(out, 'pools.json'), 'utf8')) as {
      pretrain: string[];
      benchmark: string[];
      testOnlyStyle: string;
    };
    assert.equal(pools.pretrain.length + pools.benchmark.length, r.stats.pools.pretrainEmoji + r.stats.pools.benchmarkEmoji);
    assert.equal(pools.testOnlyStyle, 'fxemoji');
    const pre = readFileSync(join(out, 'pretrain-scenes.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { caption: string; words: string[]; file: string });
    assert.equal(pre.length, 3);
    assert.ok(pre.every((x) => x.caption.length > 0 && x.words.length > 0 && existsSync(join(out, x.file))));
    assert.ok(r.stats.unseen.every((u) => u.pCaptions >= 10));

    // same build again: everything reused; another build: refused, then replaced with --force
    const again = await buildEmojiScenes({ out, ...TINY });
    assert.equal(again.rendered, 0);
    await assert.rejects(
      buildEmojiScenes({ out, ...TINY, trainScenes: 13 }),
      (e: unknown) => e instanceof ClipDecoderError && /--force/.test(e.message),
    );
    const forced = await buildEmojiScenes({ out, ...TINY, trainScenes: 13, force: true });
    assert.equal(loadDataset(out).split.train.length, 13);
    assert.equal(forced.reused, 0);
    // a folder with other files is refused too
    const other = mkdtempSync(join(tmpdir(), 'cd-scenes-other-'));
    writeFileSync(join(other, 'notes.txt'), 'mine\n');
    await assert.rejects(buildEmojiScenes({ out: other, ...TINY }), /not an EmojiScenes build/);
    // ... even with --force, which replaces only a build of ours: the user's files stay.
    mkdirSync(join(other, 'images'));
    writeFileSync(join(other, 'images', 'holiday.jpg'), 'a photo\n');
    await assert.rejects(buildEmojiScenes({ out: other, ...TINY, force: true }), /not an EmojiScenes build/);
    assert.equal(readFileSync(join(other, 'images', 'holiday.jpg'), 'utf8'), 'a photo\n');
    rmSync(other, { recursive: true, force: true });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('a build killed midway leaves no manifest; the rerun completes it', async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'cd-scenes-kill-')), 'ds');
  const args = [
    'bin/clip-decoder.js',
    'data',
    'scenes',
    '--out',
    out,
    '--size',
    '32',
    '--train-scenes',
    '12',
    '--val-scenes',
    '4',
    '--test-scenes',
    '6',
    '--style-scenes',
    '3',
    '--pretrain-scenes',
    '3',
    '--single-styles',
    'noto,fxemoji',
  ];
  try {
    const child = spawn(process.execPath, args, { stdio: 'ignore' });
    // kill it once some images are written
    const started = Date.now();
    const dir = join(out, 'images', 'train');
    const count = () => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.png')).length : 0);
    while (count() < 3 && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(existsSync(join(out, 'build.json')), 'the build had started');
    assert.ok(!existsSync(join(out, 'manifest.jsonl')), 'a killed build left a manifest');
    const r = await buildEmojiScenes({ out, ...TINY });
    assert.ok(r.reused > 0, `reused ${r.reused}`);
    assert.equal(loadDataset(out).items.length, 25);
  } finally {
    rmSync(join(out, '..'), { recursive: true, force: true });
  }
});
