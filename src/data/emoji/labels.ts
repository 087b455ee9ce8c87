// EmojiTags labels: the union of every keyword people attached to an emoji (CLDR keywords and name, emojilib
// keywords, OpenMoji tags), normalised to single words, kept when enough emoji carry them. Unicode group and
// subgroup names ("mammals", "fruit", "weather") are labels too, positive on every member of the group: they are
// the curated, clean concepts that the split may hold out as unseen.
import { labelWords, normalizeLabelWord } from '../text.ts';
import type { EmojiEntry, GroupInfo } from './sources.ts';

export interface LabelOptions {
  /** Keep a label when at least this many emoji are positive for it. */
  minPositives: number;
}

export interface GroupWord {
  word: string;
  /** The subgroups it names (keys), e.g. ["animal-mammal"]. */
  subgroups: string[];
  /** The top-level groups it names, e.g. ["symbols"] (too broad to be one concept). */
  groups: string[];
  /** Emoji keys in those (sub)groups. */
  members: Set<string>;
}

export interface EmojiLabeling {
  /** Sorted label vocabulary. */
  labels: string[];
  /** label -> emoji keys positive for it */
  positives: Map<string, Set<string>>;
  /** emoji key -> its labels, sorted */
  emojiLabels: Map<string, string[]>;
  /** Words that name a Unicode subgroup or group and are labels (after the positives threshold). */
  groupWords: Map<string, GroupWord>;
  /** Words from each keyword source before the threshold, for statistics. */
  keywordWords: number;
}

/** The normalised keyword words of one emoji (all sources). */
export function emojiKeywordWords(e: EmojiEntry): Set<string> {
  const words = new Set<string>();
  const add = (texts: readonly string[]) => {
    for (const t of texts) for (const w of labelWords(t)) words.add(w);
  };
  add(e.cldrKeywords);
  add([e.name]);
  add(e.emojilibKeywords);
  add(e.openmojiTags);
  return words;
}

/**
 * A Unicode (sub)group names one label word when its English name normalises to a single word ("mammals" ->
 * "mammal", "with hats" -> "hat"); names of two words ("marine life", "food & drink") name none, since no one
 * word means all of their members. Several groups may name the same word ("hands", "with hands"): the word
 * then covers all of them.
 */
export function groupLabelWords(
  emoji: readonly EmojiEntry[],
  groups: readonly GroupInfo[],
  subgroups: readonly GroupInfo[],
): Map<string, GroupWord> {
  const out = new Map<string, GroupWord>();
  const add = (info: GroupInfo, kind: 'subgroup' | 'group') => {
    const word = normalizeLabelWord(info.message);
    if (!word || word === 'other') return;
    const members = emoji.filter((e) => (kind === 'group' ? e.group : e.subgroup) === info.key).map((e) => e.key);
    if (members.length === 0) return;
    let g = out.get(word);
    if (!g) out.set(word, (g = { word, subgroups: [], groups: [], members: new Set() }));
    for (const m of members) g.members.add(m);
    (kind === 'group' ? g.groups : g.subgroups).push(info.key);
  };
  for (const s of subgroups) add(s, 'subgroup');
  for (const g of groups) add(g, 'group');
  return out;
}

export function computeEmojiLabels(
  emoji: readonly EmojiEntry[],
  groups: readonly GroupInfo[],
  subgroups: readonly GroupInfo[],
  options: LabelOptions,
): EmojiLabeling {
  const candidates = new Map<string, Set<string>>(); // word -> emoji keys
  const addPositive = (word: string, key: string) => {
    let s = candidates.get(word);
    if (!s) candidates.set(word, (s = new Set()));
    s.add(key);
  };
  for (const e of emoji) for (const w of emojiKeywordWords(e)) addPositive(w, e.key);
  const keywordWords = candidates.size;
  const allGroupWords = groupLabelWords(emoji, groups, subgroups);
  for (const [word, g] of allGroupWords) for (const key of g.members) addPositive(word, key);

  const labels = [...candidates.keys()].filter((w) => candidates.get(w)!.size >= options.minPositives).sort();
  const positives = new Map<string, Set<string>>();
  for (const l of labels) positives.set(l, candidates.get(l)!);
  const emojiLabels = new Map<string, string[]>();
  for (const e of emoji) emojiLabels.set(e.key, []);
  for (const l of labels) for (const key of positives.get(l)!) emojiLabels.get(key)!.push(l); // labels sorted, so lists are
  const groupWords = new Map<string, GroupWord>();
  for (const [w, g] of allGroupWords) if (positives.has(w)) groupWords.set(w, g);
  return { labels, positives, emojiLabels, groupWords, keywordWords };
}
