// The pico-CLIP (v2) pretraining corpus never shows a benchmark-pool (B) emoji of EmojiScenes, in any style,
// alone or in a scene, and the trainer refuses a corpus that would: checked on the corpus the builder computes
// now, on the emoji list the shipped model was trained on, and on the trainer's own check of a corpus folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ICON_SETS,
  META_WORDS,
  CorpusLeakError,
  drawingsOf,
  iconPhrase,
  leakCheck,
  planCorpus,
  svgHash,
} from '../tools/pico-clip/corpus.ts';
import type { CorpusPlan } from '../tools/pico-clip/corpus.ts';
import { EMOJI_STYLES, loadEmojiStyle } from '../src/data/emoji/sources.ts';

let cached: CorpusPlan | undefined;
const corpus = () => (cached ??= planCorpus());

test('corpus emoji, alone and in scenes, are P emoji in the pretraining styles only', () => {
  const { items, scenesPlan } = corpus();
  const P = new Set(scenesPlan.pools.pretrain);
  const B = new Set(scenesPlan.pools.benchmark);
  const styles = new Set(scenesPlan.trainStyles);
  assert.ok(!styles.has('fxemoji'));
  const emoji = items.filter((it) => it.kind === 'emoji');
  const scenes = items.filter((it) => it.kind === 'scene');
  assert.ok(emoji.length > 5000, `only ${emoji.length} emoji images`);
  assert.equal(scenes.length, 6000);
  for (const it of emoji) {
    assert.ok(P.has(it.key) && !B.has(it.key), `${it.id}: emoji ${it.key} is not a P emoji`);
    assert.ok(styles.has(it.set as never), `${it.id}: style ${it.set} is not a pretraining style`);
  }
  for (const it of scenes) {
    assert.ok(it.scene!.members.length >= 1 && it.scene!.members.length <= 4);
    for (const m of it.scene!.members) {
      assert.ok(P.has(m.key) && !B.has(m.key), `${it.id}: member ${m.key} is not a P emoji`);
      assert.ok(styles.has(m.style as never), `${it.id}: member style ${m.style}`);
    }
    assert.ok(it.name.includes(it.scene!.members[0]!.name.toLowerCase()), `${it.id}: caption "${it.name}" misses a member`);
  }
  // every P emoji drawn in a pretraining style is there
  const drawn = new Set(emoji.map((it) => it.key));
  const expected = scenesPlan.pools.pretrain.filter((k) => scenesPlan.emojiPlan.styles.some((s) => styles.has(s.name) && s.iconOf.has(k)));
  assert.equal(drawn.size, expected.length);
});

test('no drawing of a B emoji, in any of the eight styles, is in the corpus (by SVG body)', () => {
  const { items, scenesPlan } = corpus();
  const forbidden = new Map<string, string>();
  for (const name of EMOJI_STYLES) {
    const style = loadEmojiStyle(name, scenesPlan.emojiPlan.data.emoji);
    for (const k of scenesPlan.pools.benchmark) {
      const icon = style.iconOf.get(k);
      if (icon) forbidden.set(svgHash(style.svg(icon)), `${name}:${k}`);
    }
  }
  assert.ok(forbidden.size > 4 * scenesPlan.pools.benchmark.length);
  let n = 0;
  for (const it of items) {
    for (const d of drawingsOf(it)) {
      n++;
      const hit = forbidden.get(svgHash(d));
      assert.equal(hit, undefined, `${it.id} draws the B emoji ${hit}`);
    }
  }
  assert.ok(n > items.length);
});

test('the leak check names an item that shows a B emoji, by key, by drawing, or by the test-only style', () => {
  const { items, benchmark, scenesPlan } = corpus();
  const style = scenesPlan.options.testStyle;
  const ok = leakCheck(items.slice(0, 50), benchmark, style);
  assert.equal(ok.items, 50);
  const emoji = items.find((it) => it.kind === 'emoji')!;
  const scene = items.find((it) => it.kind === 'scene')!;
  const bKey = benchmark.emoji[0]!;
  assert.throws(
    () => leakCheck([{ ...emoji, key: bKey }], benchmark, style),
    (e: unknown) => e instanceof CorpusLeakError && e.message.includes(bKey),
  );
  const bStyle = scenesPlan.emojiPlan.styles.find((s) => s.name === 'noto')!;
  const bSvg = bStyle.svg(bStyle.iconOf.get(scenesPlan.pools.benchmark.find((k) => bStyle.iconOf.has(k))!)!);
  const member = { ...scene.scene!.members[0]!, svg: bSvg };
  assert.throws(
    () => leakCheck([{ ...scene, scene: { ...scene.scene!, members: [member] } }], benchmark, style),
    /draws a benchmark \(B\) emoji/,
  );
  assert.throws(() => leakCheck([{ ...emoji, set: style }], benchmark, style), /test-only style/);
});

test('no Fluent emoji set, and icon captions are free of drawing-style meta-words', () => {
  const { items } = corpus();
  assert.ok(!items.some((it) => it.set.includes('fluent')));
  const sets = new Set(items.filter((it) => it.kind === 'icon').map((it) => it.set));
  assert.deepEqual([...sets].sort(), [...ICON_SETS].sort());
  assert.equal(iconPhrase('bell-off-outline'), 'bell');
  assert.equal(iconPhrase('account-arrow-down-2'), 'account arrow down');
  for (const it of items) {
    if (it.kind !== 'icon') continue;
    for (const w of it.name.split(' ')) assert.ok(!META_WORDS.has(w), `${it.id}: name keeps meta-word "${w}"`);
    assert.ok(it.name.length >= 2, `${it.id}: empty caption`);
  }
});

const SHIPPED = 'models/pico-clip/training.json';
test('the shipped model was trained on P emoji only, from the pools it was checked against', {
  skip: !existsSync(SHIPPED) && 'no shipped model',
}, () => {
  const info = JSON.parse(readFileSync(SHIPPED, 'utf8')) as {
    corpus: { pretrainEmoji?: string[]; trainEmoji?: string[]; pools?: { poolsHash: string }; leakCheck?: { passed: boolean } };
  };
  const { scenesPlan, poolsHash } = corpus();
  const B = new Set(scenesPlan.pools.benchmark);
  const P = new Set(scenesPlan.pools.pretrain);
  const seen = info.corpus.pretrainEmoji ?? info.corpus.trainEmoji ?? [];
  assert.ok(seen.length > 500, `${SHIPPED} lists ${seen.length} emoji`);
  for (const k of seen) {
    assert.ok(!B.has(k), `the shipped model saw ${k}, a benchmark (B) emoji: retrain it (tools/pico-clip/make.sh)`);
    assert.ok(P.has(k), `the shipped model saw ${k}, not a P emoji`);
  }
  assert.equal(info.corpus.leakCheck?.passed, true);
  assert.equal(info.corpus.pools?.poolsHash, poolsHash, 'the pools changed since the shipped model was trained: retrain it');
});

test('pools hash is that of the pools.json an EmojiScenes build writes', {
  skip: !existsSync('/tmp/es-full/pools.json') && 'no EmojiScenes build at /tmp/es-full',
}, async () => {
  const { createHash } = await import('node:crypto');
  assert.equal(createHash('sha256').update(readFileSync('/tmp/es-full/pools.json')).digest('hex'), corpus().poolsHash);
});

test('the trainer refuses a corpus without a passed leak check, or with a B emoji or drawing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pico-corpus-'));
  const { items, benchmark, scenesPlan, poolsHash } = corpus();
  const emoji = items.find((it) => it.kind === 'emoji')!;
  const index = {
    format: 'pico-clip-corpus',
    version: 2,
    size: 8,
    pools: { poolsHash, testOnlyStyle: scenesPlan.options.testStyle },
    leakCheck: { passed: true, benchmark },
  };
  const record = (o: Record<string, unknown>) =>
    JSON.stringify({ id: emoji.id, kind: 'emoji', set: emoji.set, key: emoji.key, drawings: [svgHash(emoji.svg!)], ...o });
  const run = (idx: unknown, lines: string[]) => {
    writeFileSync(join(dir, 'index.json'), JSON.stringify(idx));
    writeFileSync(join(dir, 'captions.jsonl'), `${lines.join('\n')}\n`);
    return spawnSync(
      '/usr/bin/python3',
      ['-c', 'import sys; sys.path.insert(0, "tools/pico-clip"); import train; print(train.check_corpus(sys.argv[1])["version"])', dir],
      { encoding: 'utf8', timeout: 120_000 },
    );
  };
  const python = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (python.status !== 0) return; // the trainer's Python (Debian's python3-torch) is not installed here
  assert.equal(run(index, [record({})]).stdout.trim(), '2');
  const noCheck = run({ ...index, leakCheck: { passed: false, benchmark } }, [record({})]);
  assert.match(noCheck.stderr, /no passed leak check/);
  const bKey = run(index, [record({ key: benchmark.emoji[0] })]);
  assert.match(bKey.stderr, /captions\.jsonl line 1 .*benchmark \(B\) emoji/);
  const bDrawing = run(index, [record({ drawings: [benchmark.drawings[0]] })]);
  assert.match(bDrawing.stderr, /a drawing of a benchmark \(B\) emoji/);
  const scene = run(index, [record({ kind: 'scene', key: 'pretrain-000000', members: [{ key: benchmark.emoji[1], style: 'noto' }] })]);
  assert.match(scene.stderr, /benchmark \(B\) emoji/);
});
