// EmojiScenes concept pools. The emoji of EmojiTags are grouped into families (an emoji with its gendered
// variants, and every emoji sharing a drawing with it in any style), and families are split, stratified by label,
// into a pretraining pool P (CLIP's world: its drawings and caption words may train CLIP) and a benchmark pool B
// (never seen by CLIP). B's families are then split into train/val/test by today's EmojiTags split (`splitEmoji`),
// its unseen labels chosen only among the words P teaches, so that zero-shot transfer is possible and measured.
import { ClipDecoderError } from '../../errors.ts';
import { Rng } from '../../nn/rng.ts';
import type { EmojiLabeling, GroupWord } from './labels.ts';
import { splitEmoji, stratifiedBisect } from './split.ts';
import type { EmojiSplit, SplitOptions } from './split.ts';
import { svgHash } from './sources.ts';
import type { EmojiEntry, EmojiStyle } from './sources.ts';

/** Words that only say who is drawn: "man bowing", "woman bowing" and "person bowing" are one concept. */
const GENDER_WORDS = new Set(['man', 'woman', 'person', 'men', 'women', 'people', 'boy', 'girl', 'child', 'male', 'female']);
/** Codepoints of gendered people, mapped to their neutral form (man, woman → person; boy, girl → child; ...). */
const NEUTRAL_CODEPOINT: Record<string, string> = {
  '1f468': '1f9d1',
  '1f469': '1f9d1',
  '1f466': '1f9d2',
  '1f467': '1f9d2',
  '1f474': '1f9d3',
  '1f475': '1f9d3',
};

/** The gender-free form of an emoji: its codepoints without ZWJ gender signs, people made neutral. */
function neutralKey(e: EmojiEntry): string {
  const parts = e.key
    .split('-')
    .filter((p) => p !== 'fe0f')
    .map((p) => NEUTRAL_CODEPOINT[p] ?? p);
  const out: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] === '200d' && (parts[i + 1] === '2640' || parts[i + 1] === '2642')) i++;
    else out.push(parts[i]!);
  }
  return out.join('-');
}

function neutralName(e: EmojiEntry): string {
  return e.name
    .toLowerCase()
    .replace(/[^a-z]+/g, ' ')
    .split(' ')
    .filter((w) => w && !GENDER_WORDS.has(w))
    .join(' ');
}

export interface Families {
  /** family id (its first member's key, in emojibase order) -> member emoji keys */
  members: Map<string, string[]>;
  /** emoji key -> family id */
  familyOf: Map<string, string>;
}

/**
 * Groups emoji that must stay on one side of any split: gendered variants of one concept (by codepoints and by
 * name) and emoji that share a drawing (same SVG body) in any style. Union-find over the three relations.
 */
export function emojiFamilies(emoji: readonly EmojiEntry[], styles: readonly EmojiStyle[]): Families {
  const parent = new Map<string, string>(emoji.map((e) => [e.key, e.key]));
  const find = (k: string): string => {
    let r = k;
    while (parent.get(r) !== r) r = parent.get(r)!;
    parent.set(k, r);
    return r;
  };
  const order = new Map(emoji.map((e, i) => [e.key, i]));
  const union = (a: string, b: string) => {
    const ra = find(a);
    const rb = find(b);
    if (ra === rb) return;
    if (order.get(ra)! < order.get(rb)!) parent.set(rb, ra);
    else parent.set(ra, rb);
  };
  const byRelation = (keyOf: (e: EmojiEntry) => string[]) => {
    const first = new Map<string, string>();
    for (const e of emoji) {
      for (const k of keyOf(e)) {
        const f = first.get(k);
        if (f === undefined) first.set(k, e.key);
        else union(f, e.key);
      }
    }
  };
  byRelation((e) => [neutralKey(e)]);
  byRelation((e) => [neutralName(e)]);
  byRelation((e) => styles.flatMap((s) => (s.iconOf.has(e.key) ? [svgHash(s.svg(s.iconOf.get(e.key)!))] : [])));
  const members = new Map<string, string[]>();
  const familyOf = new Map<string, string>();
  for (const e of emoji) {
    const r = find(e.key);
    familyOf.set(e.key, r);
    (members.get(r) ?? members.set(r, []).get(r)!).push(e.key);
  }
  return { members, familyOf };
}

/** The split's `Rng` interface over the engine's seeded generator. */
export function splitRng(rng: Rng): { next(): number; int(n: number): number } {
  return { next: () => rng.uniform(), int: (n) => rng.int(n) };
}

/** A labeling whose items are families: a family carries every label of its members. */
export function familyLabeling(
  labeling: EmojiLabeling,
  families: Families,
  keep: ReadonlySet<string>,
  vocabulary: readonly string[],
): EmojiLabeling {
  const vocab = new Set(vocabulary);
  const emojiLabels = new Map<string, string[]>();
  const positives = new Map<string, Set<string>>(vocabulary.map((l) => [l, new Set()]));
  for (const [fam, keys] of families.members) {
    if (!keep.has(fam)) continue;
    const labels = [...new Set(keys.flatMap((k) => labeling.emojiLabels.get(k) ?? []))].filter((l) => vocab.has(l)).sort();
    emojiLabels.set(fam, labels);
    for (const l of labels) positives.get(l)!.add(fam);
  }
  const groupWords = new Map<string, GroupWord>();
  for (const [w, g] of labeling.groupWords) {
    if (!vocab.has(w)) continue;
    groupWords.set(w, { ...g, members: new Set([...g.members].map((k) => families.familyOf.get(k)!).filter((f) => keep.has(f))) });
  }
  return { labels: [...vocabulary], positives, emojiLabels, groupWords, keywordWords: labeling.keywordWords };
}

export interface PoolOptions extends SplitOptions {
  /** Share of the families in the benchmark pool B. */
  benchmarkFraction: number;
  /** A label is in the benchmark's vocabulary when this many B emoji carry it. */
  minBenchmarkPositives: number;
  /** An unseen label must be carried by at least this many P captions. */
  minTeach: number;
}

export interface Pools {
  families: Families;
  /** Emoji keys of P and B, in emojibase order. */
  pretrain: string[];
  benchmark: string[];
  /** The benchmark's labels (seen + unseen). */
  vocabulary: string[];
  /** Split of B by family (train/val/test hold family ids; see `emojiOfPart`). */
  split: EmojiSplit;
  /** Per label: P captions carrying it (one per P emoji × pretraining style), P emoji carrying it. */
  teach: Map<string, { captions: number; emoji: number }>;
}

/**
 * Splits the concepts into P and B and B into train/val/test. `captionsPerEmoji(key)` is how many single-emoji
 * captions the pretraining corpus makes of a P emoji (one per pretraining style that draws it): a label word is
 * taught by P when those captions carry it `minTeach` times, and only taught words may be unseen.
 */
export function splitPools(
  emoji: readonly EmojiEntry[],
  labeling: EmojiLabeling,
  families: Families,
  captionsPerEmoji: (key: string) => number,
  o: PoolOptions,
): Pools {
  const rng = new Rng(o.seed * 7919 + 17); // pools and split: one stream, independent of scene counts
  const famLabels = (f: string) => [...new Set(families.members.get(f)!.flatMap((k) => labeling.emojiLabels.get(k) ?? []))];
  const famIds = [...families.members.keys()];
  const inB = stratifiedBisect(famIds, famLabels, o.benchmarkFraction, splitRng(rng));
  const pretrain = emoji.filter((e) => !inB.has(families.familyOf.get(e.key)!)).map((e) => e.key);
  const benchmark = emoji.filter((e) => inB.has(families.familyOf.get(e.key)!)).map((e) => e.key);

  const teach = new Map<string, { captions: number; emoji: number }>();
  for (const l of labeling.labels) teach.set(l, { captions: 0, emoji: 0 });
  for (const k of pretrain) {
    const n = captionsPerEmoji(k);
    for (const l of labeling.emojiLabels.get(k) ?? []) {
      const t = teach.get(l)!;
      t.captions += n;
      t.emoji += n > 0 ? 1 : 0;
    }
  }
  const taught = (l: string) => (teach.get(l)?.captions ?? 0) >= o.minTeach;

  const bCount = new Map<string, number>();
  for (const k of benchmark) for (const l of labeling.emojiLabels.get(k) ?? []) bCount.set(l, (bCount.get(l) ?? 0) + 1);
  const vocabulary = labeling.labels.filter((l) => (bCount.get(l) ?? 0) >= o.minBenchmarkPositives);
  const bFamilies = new Set(famIds.filter((f) => inB.has(f)));
  const fl = familyLabeling(labeling, families, bFamilies, vocabulary);
  // A family with no benchmark label cannot be a scene member (its scene would teach nothing).
  const labelled = [...bFamilies].filter((f) => fl.emojiLabels.get(f)!.length > 0);
  // Only words P teaches may be unseen: untaught concept and subgroup words stay seen.
  for (const w of [...fl.groupWords.keys()]) if (!taught(w)) fl.groupWords.delete(w);
  const split = splitEmoji(labelled, fl, { ...o, seed: rng.nextU32(), conceptWords: o.conceptWords.filter(taught) });
  for (const u of split.unseen) {
    if (!taught(u.label))
      throw new ClipDecoderError('DATASET_INVALID', `EmojiScenes: unseen label "${u.label}" is not taught by P`, '--min-teach');
  }
  return { families, pretrain, benchmark, vocabulary, split, teach };
}

/** Emoji keys of a part of B's family split, in emojibase order. */
export function emojiOfPart(pools: Pools, families: readonly string[]): string[] {
  const fams = new Set(families);
  return pools.benchmark.filter((k) => fams.has(pools.families.familyOf.get(k)!));
}
