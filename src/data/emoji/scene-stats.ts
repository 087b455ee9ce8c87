// What an EmojiScenes build reports: `stats.json` (pool sizes, scenes per part, objects and labels per scene,
// per unseen label its P captions and test positives) and `pools.json` (which emoji are P and which B, so that
// other tools, the pretraining corpus first, can check it).
import type { EmojiScenesPlan, PlannedScene } from './scenes.ts';
import { MIN_OBJECT_SIDE } from './compose.ts';
import { EMOJI_STYLES, packageVersion } from './sources.ts';

export interface UnseenStats {
  label: string;
  source: 'concept' | 'subgroup';
  /** P single-emoji captions (P emoji × pretraining styles) and P emoji carrying the word. */
  pCaptions: number;
  pEmoji: number;
  pSceneCaptions: number;
  bEmoji: { train: number; val: number; test: number };
  testScenes: number;
  styleScenes: number;
  testSingles: number;
}

export function emojiScenesStats(plan: EmojiScenesPlan) {
  const { pools, scenes, pretrain, options, parts, singles } = plan;
  const byPart = (p: string, subset?: string) => scenes.filter((s) => s.part === p && (subset === undefined || s.subset === subset));
  const mean = (xs: number[]) => Math.round((xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)) * 100) / 100;
  const hist = (xs: PlannedScene[]) => {
    const h: Record<string, number> = { 1: 0, 2: 0, 3: 0, 4: 0 };
    for (const s of xs) h[s.members.length] = (h[s.members.length] ?? 0) + 1;
    return h;
  };
  const describe = (xs: PlannedScene[]) => ({
    scenes: xs.length,
    objectsPerScene: mean(xs.map((s) => s.members.length)),
    objects: hist(xs),
    labelsPerImage: mean(xs.map((s) => s.labels.length)),
  });
  const backgrounds: Record<string, number> = {};
  for (const s of scenes) backgrounds[s.spec.background.kind] = (backgrounds[s.spec.background.kind] ?? 0) + 1;
  const memberStyles: Record<string, number> = {};
  for (const s of scenes) for (const m of s.members) memberStyles[m.style] = (memberStyles[m.style] ?? 0) + 1;
  const labelsOf = plan.emojiPlan.labeling.emojiLabels;
  const countEmoji = (keys: string[], l: string) => keys.filter((k) => labelsOf.get(k)!.includes(l)).length;
  const testIds = new Set(plan.singleSplit.test);
  const testSingles = singles.filter((it) => testIds.has(it.id));
  const unseen: UnseenStats[] = pools.split.unseen.map((u) => ({
    label: u.label,
    source: u.source,
    pCaptions: pools.teach.get(u.label)!.captions,
    pEmoji: pools.teach.get(u.label)!.emoji,
    pSceneCaptions: pretrain.filter((s) => s.labels.includes(u.label)).length,
    bEmoji: { train: countEmoji(parts.train, u.label), val: countEmoji(parts.val, u.label), test: countEmoji(parts.test, u.label) },
    testScenes: byPart('test', 'scene').filter((s) => s.labels.includes(u.label)).length,
    styleScenes: byPart('test', 'style-transfer').filter((s) => s.labels.includes(u.label)).length,
    testSingles: testSingles.filter((it) => it.labels.includes(u.label)).length,
  }));
  return {
    options,
    pools: {
      why: 'half of the concept families each way: every unseen label needs P captions to be taught and B emoji on both sides of the test split',
      families: pools.families.members.size,
      pretrainEmoji: pools.pretrain.length,
      benchmarkEmoji: pools.benchmark.length,
      benchmarkEmojiInScenes: parts.train.length + parts.val.length + parts.test.length,
      pretrainFamilies: new Set(pools.pretrain.map((k) => pools.families.familyOf.get(k))).size,
      benchmarkFamilies: new Set(pools.benchmark.map((k) => pools.families.familyOf.get(k))).size,
    },
    emoji: { train: parts.train.length, val: parts.val.length, test: parts.test.length },
    styles: { train: plan.trainStyles, testOnly: options.testStyle, memberDraws: memberStyles },
    scenes: {
      train: describe(byPart('train')),
      val: describe(byPart('val')),
      test: describe(byPart('test', 'scene')),
      styleTransfer: describe(byPart('test', 'style-transfer')),
      pretrain: describe(pretrain),
      backgrounds,
      minObjectSidePx: Math.round(MIN_OBJECT_SIDE * options.size),
      minObjectSidePatches6x6: Math.round(MIN_OBJECT_SIDE * 6 * 100) / 100,
    },
    singles: { train: plan.singleSplit.train.length, val: plan.singleSplit.val.length, test: plan.singleSplit.test.length },
    labels: {
      total: pools.vocabulary.length,
      seen: pools.split.seen.length,
      unseen: pools.split.unseen.length,
      pseudoUnseen: pools.split.pseudoUnseen.length,
      unseenFromConcepts: pools.split.unseen.filter((u) => u.source === 'concept').length,
      unseenFromSubgroups: pools.split.unseen.filter((u) => u.source === 'subgroup').length,
    },
    unseen,
    sources: sourcesOf(),
  };
}
export type EmojiScenesStats = ReturnType<typeof emojiScenesStats>;

/** What `pools.json` holds: which emoji (hexcodes) are P and which B, and the styles each may use. */
export function poolsRecord(plan: EmojiScenesPlan) {
  const hex = (keys: string[]) => keys.map((k) => plan.emojiPlan.pool.find((e) => e.key === k)!.hexcode);
  const { pools } = plan;
  return {
    format: 'clip-decoder-emojiscenes-pools',
    version: 1,
    seed: plan.options.seed,
    pretrain: hex(pools.pretrain),
    benchmark: hex(pools.benchmark),
    benchmarkParts: { train: hex(plan.parts.train), val: hex(plan.parts.val), test: hex(plan.parts.test) },
    pretrainStyles: plan.trainStyles,
    testOnlyStyle: plan.options.testStyle,
    families: [...pools.families.members.values()].filter((m) => m.length > 1).map(hex),
    unseenTaught: Object.fromEntries(pools.split.unseen.map((u) => [u.label, pools.teach.get(u.label)!])),
  };
}

/** Versions of every package the build reads, known without planning. */
export function sourcesOf(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pkg of ['emojibase-data', 'emojilib', 'openmoji', '@resvg/resvg-js', ...EMOJI_STYLES.map((s) => `@iconify-json/${s}`)])
    out[pkg] = packageVersion(pkg);
  return out;
}
