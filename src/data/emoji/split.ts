// The EmojiTags split, deterministic from a seed. Labels: the NUS-WIDE concept words that are EmojiTags labels
// are unseen, plus Unicode subgroup words where needed to reach the wanted number of unseen labels; every other
// label is seen. Emoji (never single images: all styles of an emoji stay together) go ~70/30 to train/test by
// iterative stratification, so that every label keeps about the same share of positives on each side, and each
// unseen label has at least `minTestPositives` test emoji. Validation emoji are carved out of train the same way,
// with a random set of seen labels (pseudo-unseen) guaranteed `minTestPositives` validation emoji each.
import { ClipDecoderError } from '../../errors.ts';
import { createRng, shuffleInPlace } from '../random.ts';
import type { Rng } from '../random.ts';
import type { EmojiLabeling } from './labels.ts';

export interface SplitOptions {
  seed: number;
  /** Share of emoji in test. */
  testFraction: number;
  /** Share of the training emoji held out as validation. */
  valFraction: number;
  /** Wanted number of unseen labels with ≥ minTestPositives test emoji. */
  minUnseen: number;
  minTestPositives: number;
  /** Clean concept words (normalised) that are unseen whenever they are labels. */
  conceptWords: readonly string[];
}

export interface UnseenLabel {
  label: string;
  source: 'concept' | 'subgroup';
}

export interface EmojiSplit {
  /** Emoji keys per part. */
  train: string[];
  val: string[];
  test: string[];
  seen: string[];
  unseen: UnseenLabel[];
  pseudoUnseen: string[];
}

/**
 * Iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011) into two parts, A and B, with B taking
 * `fraction` of the items: the rarest label is placed first, each of its items going to the part that still
 * wants the most of that label. `minB` raises B's wanted count for some labels.
 */
export function stratifiedBisect(
  items: readonly string[],
  labelsOf: (item: string) => readonly string[],
  fraction: number,
  rng: Rng,
  minB: ReadonlyMap<string, number> = new Map(),
): Set<string> {
  const order = shuffleInPlace([...items], rng); // random tie-breaking, fixed by the seed
  const count = new Map<string, number>();
  for (const it of order) for (const l of labelsOf(it)) count.set(l, (count.get(l) ?? 0) + 1);
  const wantB = new Map<string, number>();
  const wantA = new Map<string, number>();
  for (const [l, n] of count) {
    const b = Math.min(n, Math.max(fraction * n, minB.get(l) ?? 0));
    wantB.set(l, b);
    wantA.set(l, n - b);
  }
  let totalB = fraction * order.length;
  let totalA = order.length - totalB;
  const inB = new Set<string>();
  const assigned = new Set<string>();
  const byLabel = new Map<string, string[]>();
  for (const it of order) for (const l of labelsOf(it)) (byLabel.get(l) ?? byLabel.set(l, []).get(l)!).push(it);
  const remaining = new Map(count); // label -> items with it not yet assigned

  const place = (it: string, toB: boolean) => {
    assigned.add(it);
    if (toB) {
      inB.add(it);
      totalB -= 1;
    } else totalA -= 1;
    for (const l of labelsOf(it)) {
      remaining.set(l, remaining.get(l)! - 1);
      if (toB) wantB.set(l, wantB.get(l)! - 1);
      else wantA.set(l, wantA.get(l)! - 1);
    }
  };

  for (;;) {
    // The label with the fewest unassigned items (ties: alphabetical, for determinism).
    let label: string | undefined;
    let fewest = Infinity;
    for (const [l, n] of remaining) {
      if (n > 0 && (n < fewest || (n === fewest && l < label!))) {
        fewest = n;
        label = l;
      }
    }
    if (label === undefined) break;
    for (const it of byLabel.get(label)!) {
      if (assigned.has(it)) continue;
      const a = wantA.get(label)!;
      const b = wantB.get(label)!;
      const toB = b !== a ? b > a : totalB !== totalA ? totalB > totalA : rng.next() < fraction;
      place(it, toB);
    }
  }
  for (const it of order) if (!assigned.has(it)) place(it, totalB > totalA);
  return inB;
}

/** Moves items of `positives` from A to B until B holds `min` of them (fewest-label items first, then by key). */
function topUp(min: number, a: Set<string>, b: Set<string>, positives: ReadonlySet<string>, labelsOf: (item: string) => readonly string[]) {
  let have = 0;
  for (const k of positives) if (b.has(k)) have++;
  const movable = [...positives].filter((k) => a.has(k)).sort((x, y) => labelsOf(x).length - labelsOf(y).length || (x < y ? -1 : 1));
  for (const k of movable) {
    if (have >= min) break;
    a.delete(k);
    b.add(k);
    have++;
  }
  return have;
}

export function splitEmoji(emojiKeys: readonly string[], labeling: EmojiLabeling, options: SplitOptions): EmojiSplit {
  const { positives, groupWords } = labeling;
  const rng = createRng(options.seed);
  const labelsOf = (k: string) => labeling.emojiLabels.get(k) ?? [];

  // Unseen labels: concept words first, then subgroup words (pure subgroups only, largest first) while needed.
  const unseen: UnseenLabel[] = [];
  const concepts = [...new Set(options.conceptWords)].filter((w) => positives.has(w)).sort();
  for (const w of concepts) unseen.push({ label: w, source: 'concept' });
  const taken = new Set(concepts);
  const subgroupWords = [...groupWords.values()]
    .filter((g) => g.groups.length === 0 && !taken.has(g.word))
    .sort((x, y) => y.members.size - x.members.size || (x.word < y.word ? -1 : 1));
  const eligible = (l: string) => positives.get(l)!.size >= options.minTestPositives + 1; // keep at least one outside test
  let unseenEligible = unseen.filter((u) => eligible(u.label)).length;
  for (const g of subgroupWords) {
    if (unseenEligible >= options.minUnseen) break;
    unseen.push({ label: g.word, source: 'subgroup' });
    if (eligible(g.word)) unseenEligible++;
  }
  if (unseenEligible < options.minUnseen) {
    throw new ClipDecoderError(
      'DATASET_INVALID',
      `EmojiTags: only ${unseenEligible} unseen labels can have ${options.minTestPositives} test emoji (wanted ${options.minUnseen}); lower --min-positives`,
      '--min-positives',
    );
  }
  unseen.sort((x, y) => (x.label < y.label ? -1 : 1));
  const unseenSet = new Set(unseen.map((u) => u.label));

  // Train/test by emoji, stratified; unseen labels ask for their minimum in test.
  const minTest = new Map<string, number>();
  for (const u of unseen) minTest.set(u.label, options.minTestPositives);
  const testSet = stratifiedBisect(emojiKeys, labelsOf, options.testFraction, rng, minTest);
  const trainSet = new Set(emojiKeys.filter((k) => !testSet.has(k)));
  for (const u of unseen) {
    if (!eligible(u.label)) continue;
    topUp(options.minTestPositives, trainSet, testSet, positives.get(u.label)!, labelsOf);
  }

  // Pseudo-unseen: seen labels picked at random among those with enough training emoji to give validation its share.
  const seen = labeling.labels.filter((l) => !unseenSet.has(l));
  const countIn = (l: string, part: Set<string>) => {
    let n = 0;
    for (const k of positives.get(l)!) if (part.has(k)) n++;
    return n;
  };
  const candidates = seen.filter((l) => countIn(l, trainSet) >= 2 * options.minTestPositives);
  const pseudo = shuffleInPlace([...candidates], rng)
    .slice(0, Math.min(unseen.length, candidates.length))
    .sort();

  // Validation out of train, stratified the same way; pseudo-unseen labels ask for their minimum in validation.
  const trainKeys = emojiKeys.filter((k) => trainSet.has(k));
  const minVal = new Map<string, number>();
  for (const l of pseudo) minVal.set(l, options.minTestPositives);
  const valSet = stratifiedBisect(trainKeys, labelsOf, options.valFraction, rng, minVal);
  const fitSet = new Set(trainKeys.filter((k) => !valSet.has(k)));
  for (const l of pseudo) topUp(options.minTestPositives, fitSet, valSet, positives.get(l)!, labelsOf);

  return {
    train: emojiKeys.filter((k) => fitSet.has(k)),
    val: emojiKeys.filter((k) => valSet.has(k)),
    test: emojiKeys.filter((k) => testSet.has(k)),
    seen,
    unseen,
    pseudoUnseen: pseudo,
  };
}
