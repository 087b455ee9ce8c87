import { test } from 'node:test';
import assert from 'node:assert/strict';
import { trainWordVectors, labelVectors, captionWords } from '../src/text/wordvec.ts';

function cos(a: Float32Array, b: Float32Array): number {
  let ab = 0,
    aa = 0,
    bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! ** 2;
    bb += b[i]! ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

// Two topics that never share a caption: animals and food.
const captions: string[] = [];
for (let i = 0; i < 60; i++) {
  captions.push(['dog pet animal puppy', 'cat pet animal kitten', 'horse animal farm', 'cow animal farm milk'][i % 4]!);
  captions.push(['pizza food cheese', 'burger food meal', 'apple fruit food', 'banana fruit food yellow'][i % 4]!);
}

test('words that share captions get closer vectors than words that never do', () => {
  const wv = trainWordVectors(captions, { dim: 16, epochs: 10, seed: 1 });
  const { vectors } = labelVectors(wv, ['dog', 'cat', 'pizza', 'burger']);
  const v = (i: number) => vectors.subarray(i * 16, (i + 1) * 16);
  assert.ok(cos(v(0), v(1)) > cos(v(0), v(2)) + 0.2, `dog~cat ${cos(v(0), v(1))} vs dog~pizza ${cos(v(0), v(2))}`);
  assert.ok(cos(v(2), v(3)) > cos(v(1), v(3)) + 0.2);
});

test('training is deterministic from the seed', () => {
  const a = trainWordVectors(captions, { dim: 8, epochs: 2, seed: 3 });
  const b = trainWordVectors(captions, { dim: 8, epochs: 2, seed: 3 });
  assert.deepEqual(a.vectors, b.vectors);
});

test('an unknown word borrows the vectors of words sharing its trigrams; multi-word labels average', () => {
  const wv = trainWordVectors(captions, { dim: 8, epochs: 2, seed: 0 });
  const { vectors, outOfVocabulary } = labelVectors(wv, ['puppies', 'dog cat']);
  assert.deepEqual(outOfVocabulary, ['puppies']);
  const puppy = labelVectors(wv, ['puppy']).vectors;
  assert.ok(cos(vectors.subarray(0, 8), puppy) > 0.999);
  const dog = labelVectors(wv, ['dog']).vectors,
    cat = labelVectors(wv, ['cat']).vectors;
  for (let j = 0; j < 8; j++) assert.ok(Math.abs(vectors[8 + j]! - (dog[j]! + cat[j]!) / 2) < 1e-6);
  assert.deepEqual(captionWords("It's a Dog-House!"), ['it', 's', 'a', 'dog', 'house']);
});
