// The pico-CLIP pretraining corpus never holds an EmojiTags test (or validation) emoji, in any style: checked on
// the corpus the builder computes now and on the emoji list the shipped model was trained on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { ICON_SETS, META_WORDS, iconPhrase, planCorpus, svgHash } from '../tools/pico-clip/corpus.ts';
import type { CorpusPlan } from '../tools/pico-clip/corpus.ts';
import { EMOJI_STYLES, loadEmojiStyle } from '../src/data/emoji/sources.ts';

let cached: CorpusPlan | undefined;
const corpus = () => (cached ??= planCorpus());

test('corpus emoji are EmojiTags train-split emoji only', () => {
  const { items, emojiPlan } = corpus();
  const train = new Set(emojiPlan.split.train);
  const heldOut = new Set([...emojiPlan.split.test, ...emojiPlan.split.val]);
  const emoji = items.filter((it) => it.kind === 'emoji');
  assert.ok(emoji.length > 5000, `only ${emoji.length} emoji images`);
  for (const it of emoji) {
    assert.ok(train.has(it.key), `${it.id}: emoji ${it.key} is not in the train split`);
    assert.ok(!heldOut.has(it.key), `${it.id}: emoji ${it.key} is a test/val emoji`);
  }
  // every train emoji is there, in one style at least (a drawing shared with a test emoji is left out)
  const styles = new Map<string, Set<string>>();
  for (const it of emoji) (styles.get(it.key) ?? styles.set(it.key, new Set()).get(it.key)!).add(it.set);
  assert.equal(styles.size, train.size);
  for (const [k, s] of styles) assert.ok(s.size >= 1, `${k} is drawn in ${[...s].join(', ')} only`);
});

test('no test emoji drawing, in any emoji style, is in the corpus (by drawing content)', () => {
  const { items, emojiPlan } = corpus();
  const testKeys = emojiPlan.split.test;
  const forbidden = new Map<string, string>();
  for (const name of EMOJI_STYLES) {
    const style = loadEmojiStyle(name, emojiPlan.data.emoji);
    for (const k of testKeys) {
      const icon = style.iconOf.get(k);
      if (icon) forbidden.set(svgHash(style.svg(icon)), `${name}:${k}`);
    }
  }
  assert.ok(forbidden.size > 2 * testKeys.length);
  for (const it of items) {
    const hit = forbidden.get(svgHash(it.svg));
    assert.equal(hit, undefined, `${it.id} draws the test emoji ${hit}`);
  }
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

test('the shipped model was trained on train-split emoji only', { skip: !existsSync('models/pico-clip/training.json') && 'no shipped model' }, () => {
  const info = JSON.parse(readFileSync('models/pico-clip/training.json', 'utf8')) as { corpus: { trainEmoji: string[] } };
  const { emojiPlan } = corpus();
  const heldOut = new Set([...emojiPlan.split.test, ...emojiPlan.split.val]);
  const train = new Set(emojiPlan.split.train);
  assert.ok(info.corpus.trainEmoji.length > 500);
  for (const k of info.corpus.trainEmoji) {
    assert.ok(!heldOut.has(k), `the shipped model saw ${k}, now a test/val emoji: retrain it (tools/pico-clip/make.sh)`);
    assert.ok(train.has(k), `the shipped model saw ${k}, not a train emoji`);
  }
});
