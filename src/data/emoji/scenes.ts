// EmojiScenes: the leak-free, multi-object zero-shot benchmark. Concepts are split into a pretraining pool P
// (CLIP's world) and a benchmark pool B (pools.ts); benchmark images are scenes of 1-4 B emoji on varied
// backgrounds (compose.ts), train/val/test scenes from disjoint B families, one drawing style only in test
// (style transfer), plus the single-emoji images of B (the old protocol) and P scenes with compositional
// captions for pretraining. `planEmojiScenes` decides everything without rendering (seconds, deterministic);
// `buildEmojiScenes` renders and writes the folder.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { ClipDecoderError } from '../../errors.ts';
import { Rng } from '../../nn/rng.ts';
import { writeFileAtomic } from '../../util/fs.ts';
import { MANIFEST_FILE, SPLIT_FILE, writeManifest, writeSplit } from '../manifest.ts';
import { shuffleInPlace } from '../random.ts';
import type { DatasetItem, DatasetSplit } from '../types.ts';
import { emojiTagsNotice, imageId, planEmojiTags, readConceptWords, resolveStyles } from './build.ts';
import type { EmojiTagsPlan } from './build.ts';
import { drawObjectCount, drawScene, pixelBox, placeBoxes, randomBackground } from './compose.ts';
import type { SceneMember, SceneSpec } from './compose.ts';
import { emojiFamilies, emojiOfPart, splitPools, splitRng } from './pools.ts';
import type { Pools } from './pools.ts';
import { renderSvgPng, writeMissingFiles } from './render.ts';
import { emojiScenesStats, poolsRecord, sourcesOf } from './scene-stats.ts';
import type { FileJob } from './render.ts';
import type { EmojiScenesStats, UnseenStats } from './scene-stats.ts';
import { SCENES_DEFAULTS } from './scene-defaults.ts';
import { EMOJI_STYLES } from './sources.ts';
import type { EmojiEntry, EmojiStyle, EmojiStyleName } from './sources.ts';

export type { EmojiScenesStats, UnseenStats };

export interface EmojiScenesOptions {
  out: string;
  /** Scene side in pixels. Default 128. */
  size?: number;
  seed?: number;
  trainScenes?: number;
  valScenes?: number;
  /** Test scenes in the training styles. */
  testScenes?: number;
  /** Test scenes drawn wholly in the test-only style. */
  styleScenes?: number;
  /** Scenes of P emoji with captions, for pretraining. */
  pretrainScenes?: number;
  /** The style only test scenes use. Default fxemoji. */
  testStyle?: string;
  /** Share of concept families in the benchmark pool B. Default 0.5. */
  benchmarkFraction?: number;
  /** Each unseen label is carried by at least this many P captions. Default 10. */
  minTeach?: number;
  minPositives?: number;
  minUnseen?: number;
  testFraction?: number;
  valFraction?: number;
  /** Styles of the single-emoji subset (default: all; the test style still in test only). */
  singleStyles?: readonly string[];
  /** Largest overlap of two members' boxes, as a share of the smaller. Default 0.15. */
  maxOverlap?: number;
  /** Replace a different build in `out`. */
  force?: boolean;
  concurrency?: number;
  /** Called as images are drawn (the CLI draws a bar from it). */
  onProgress?: (done: number, total: number) => void;
}

type Resolved = Required<Omit<EmojiScenesOptions, 'out' | 'force' | 'concurrency' | 'onProgress' | 'testStyle' | 'singleStyles'>> & {
  testStyle: EmojiStyleName;
  singleStyles: EmojiStyleName[];
};

export { SCENES_DEFAULTS };

/** Share of scenes holding 1, 2, 3, 4 emoji: mostly several objects, a few single ones. */
export const OBJECT_WEIGHTS = [0.1, 0.3, 0.3, 0.3] as const;

const FLAG: Record<keyof Resolved, string> = {
  size: '--size',
  seed: '--seed',
  trainScenes: '--train-scenes',
  valScenes: '--val-scenes',
  testScenes: '--test-scenes',
  styleScenes: '--style-scenes',
  pretrainScenes: '--pretrain-scenes',
  testStyle: '--test-style',
  singleStyles: '--single-styles',
  benchmarkFraction: '--benchmark-fraction',
  minTeach: '--min-teach',
  minPositives: '--min-positives',
  minUnseen: '--min-unseen',
  testFraction: '--test-fraction',
  valFraction: '--val-fraction',
  maxOverlap: '--max-overlap',
};

/** Options with defaults, each checked; the error names the flag. */
export function resolveScenesOptions(o: Omit<EmojiScenesOptions, 'out'>): Resolved {
  const given = o as Record<string, unknown>;
  const r: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(SCENES_DEFAULTS)) r[k] = given[k] ?? v; // only the options that shape the build
  const bad = (k: keyof Resolved, want: string) => {
    throw new ClipDecoderError('BAD_PARAMETER', `${FLAG[k]} must be ${want}, got ${JSON.stringify(r[k])}`, FLAG[k]);
  };
  const int = (k: keyof Resolved, min: number, max: number) => {
    const v = r[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(k, `an integer in ${min}..${max}`);
  };
  const frac = (k: keyof Resolved, lo: number, hi: number) => {
    const v = r[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= lo || v >= hi) bad(k, `a number strictly between ${lo} and ${hi}`);
  };
  int('size', 32, 1024);
  int('seed', 0, 2 ** 32 - 1);
  int('trainScenes', 1, 1_000_000);
  int('valScenes', 1, 1_000_000);
  int('testScenes', 1, 1_000_000);
  int('styleScenes', 0, 1_000_000);
  int('pretrainScenes', 0, 1_000_000);
  int('minTeach', 1, 10_000);
  int('minPositives', 1, 10_000);
  int('minUnseen', 1, 1000);
  frac('benchmarkFraction', 0, 1);
  frac('testFraction', 0, 1);
  frac('valFraction', 0, 1);
  frac('maxOverlap', -1e-9, 1);
  const style = String(r.testStyle);
  if (style.startsWith('fluent'))
    throw new ClipDecoderError(
      'BAD_PARAMETER',
      `--test-style ${style}: the Fluent emoji sets are reserved for independent evaluation and never used`,
      '--test-style',
    );
  if (!(EMOJI_STYLES as readonly string[]).includes(style)) bad('testStyle', `one of ${EMOJI_STYLES.join(', ')}`);
  r.singleStyles = resolveStyles(r.singleStyles as string[], '--single-styles');
  return r as Resolved;
}

export interface SceneMemberInfo extends SceneMember {
  hexcode: string;
  emoji: string;
  name: string;
}

export interface PlannedScene {
  id: string;
  file: string;
  part: 'train' | 'val' | 'test' | 'pretrain';
  /** "scene" (training styles), "style-transfer" (test style only), "pretrain". */
  subset: 'scene' | 'style-transfer' | 'pretrain';
  spec: SceneSpec;
  members: SceneMemberInfo[];
  labels: string[];
}

export interface EmojiScenesPlan {
  options: Resolved;
  emojiPlan: EmojiTagsPlan;
  pools: Pools;
  /** Styles of P and of B's train/val scenes (every style but the test style). */
  trainStyles: EmojiStyleName[];
  /** Emoji keys of B per part (every family with a benchmark label). */
  parts: { train: string[]; val: string[]; test: string[] };
  scenes: PlannedScene[];
  pretrain: PlannedScene[];
  /** The single-emoji images of B (one per emoji and style), the old protocol's subset. */
  singles: DatasetItem[];
  split: DatasetSplit;
  singleSplit: DatasetSplit;
}

const article = (name: string) => (/^[aeiou]/i.test(name) ? `an ${name}` : `a ${name}`);

/** "a dog, a slice of pizza and a red heart", members read left to right. */
export function sceneCaption(members: readonly { name: string; box: readonly number[] }[]): string {
  const names = [...members].sort((a, b) => a.box[0]! - b.box[0]!).map((m) => article(m.name.toLowerCase()));
  return names.length <= 1 ? (names[0] ?? '') : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/**
 * Plans `count` scenes of `keys`: members are dealt from a reshuffled deck (so every emoji appears about as
 * often), never two of one family in a scene, each in a random style among `stylesOf(key)`.
 */
function planScenes(
  count: number,
  keys: readonly string[],
  stylesOf: (key: string) => EmojiStyleName[],
  rng: Rng,
  ctx: { familyOf: Map<string, string>; entry: Map<string, EmojiEntry>; labelsOf: (key: string) => string[]; maxOverlap: number },
  make: (i: number, spec: SceneSpec, members: SceneMemberInfo[], labels: string[]) => PlannedScene,
): PlannedScene[] {
  const families = new Set(keys.map((k) => ctx.familyOf.get(k)!)).size;
  const out: PlannedScene[] = [];
  let deck: string[] = [];
  for (let i = 0; i < count; i++) {
    const n = Math.min(drawObjectCount(rng, OBJECT_WEIGHTS), families);
    const boxes = placeBoxes(n, rng, ctx.maxOverlap);
    const members: SceneMemberInfo[] = [];
    const used = new Set<string>();
    while (members.length < n) {
      if (deck.length === 0) deck = shuffleInPlace([...keys], splitRng(rng));
      const k = deck.pop()!;
      const fam = ctx.familyOf.get(k)!;
      if (used.has(fam)) continue;
      used.add(fam);
      const styles = stylesOf(k);
      const e = ctx.entry.get(k)!;
      members.push({
        key: k,
        style: styles[rng.int(styles.length)]!,
        box: boxes[members.length]!,
        hexcode: e.hexcode,
        emoji: e.emoji,
        name: e.name,
      });
    }
    const labels = [...new Set(members.flatMap((m) => ctx.labelsOf(m.key)))].sort();
    out.push(
      make(
        i,
        { background: randomBackground(rng), members: members.map((m) => ({ key: m.key, style: m.style, box: m.box })) },
        members,
        labels,
      ),
    );
  }
  return out;
}

export function planEmojiScenes(opts: Omit<EmojiScenesOptions, 'out'> = {}): EmojiScenesPlan {
  const options = resolveScenesOptions(opts);
  const emojiPlan = planEmojiTags({ minPositives: options.minPositives, seed: options.seed });
  const styles: EmojiStyle[] = emojiPlan.styles;
  const trainStyles = styles.map((s) => s.name).filter((s) => s !== options.testStyle);
  const styleByName = new Map(styles.map((s) => [s.name, s]));
  const drawnIn = (key: string, names: readonly EmojiStyleName[]) => names.filter((s) => styleByName.get(s)!.iconOf.has(key));

  // Streams drawn in a fixed order from the seed: the split never depends on the scene counts, and a build with
  // fewer scenes is a prefix of a bigger one.
  const master = new Rng(options.seed);
  const poolSeed = master.nextU32();
  const streams = {
    train: master.nextU32(),
    val: master.nextU32(),
    test: master.nextU32(),
    style: master.nextU32(),
    pretrain: master.nextU32(),
  };

  const families = emojiFamilies(emojiPlan.pool, styles);
  const pools = splitPools(emojiPlan.pool, emojiPlan.labeling, families, (k) => drawnIn(k, trainStyles).length, {
    ...options,
    seed: poolSeed,
    minBenchmarkPositives: 3,
    minTestPositives: 2,
    conceptWords: readConceptWords(),
  });
  const vocab = new Set(pools.vocabulary);
  const benchLabels = (k: string) => (emojiPlan.labeling.emojiLabels.get(k) ?? []).filter((l) => vocab.has(l));
  const parts = {
    train: emojiOfPart(pools, pools.split.train),
    val: emojiOfPart(pools, pools.split.val),
    test: emojiOfPart(pools, pools.split.test),
  };
  const entry = new Map(emojiPlan.pool.map((e) => [e.key, e]));
  const ctx = { familyOf: families.familyOf, entry, labelsOf: benchLabels, maxOverlap: options.maxOverlap };

  const scene =
    (part: 'train' | 'val' | 'test', subset: 'scene' | 'style-transfer', prefix: string) =>
    (i: number, spec: SceneSpec, members: SceneMemberInfo[], labels: string[]): PlannedScene => {
      const n = String(i).padStart(6, '0');
      return { id: `${prefix}-${n}`, file: `images/${prefix}/${n}.png`, part, subset, spec, members, labels };
    };
  const scenes: PlannedScene[] = [
    ...planScenes(
      options.trainScenes,
      parts.train,
      (k) => drawnIn(k, trainStyles),
      new Rng(streams.train),
      ctx,
      scene('train', 'scene', 'train'),
    ),
    ...planScenes(options.valScenes, parts.val, (k) => drawnIn(k, trainStyles), new Rng(streams.val), ctx, scene('val', 'scene', 'val')),
    ...planScenes(
      options.testScenes,
      parts.test,
      (k) => drawnIn(k, trainStyles),
      new Rng(streams.test),
      ctx,
      scene('test', 'scene', 'test'),
    ),
  ];
  const styleKeys = parts.test.filter((k) => styleByName.get(options.testStyle)!.iconOf.has(k));
  if (options.styleScenes > 0) {
    if (styleKeys.length === 0)
      throw new ClipDecoderError('BAD_PARAMETER', `--test-style ${options.testStyle} draws no test emoji`, '--test-style');
    scenes.push(
      ...planScenes(
        options.styleScenes,
        styleKeys,
        () => [options.testStyle],
        new Rng(streams.style),
        ctx,
        scene('test', 'style-transfer', 'style'),
      ),
    );
  }

  // P scenes carry every label word of their members (P may teach any word, the benchmark's unseen ones included).
  const pretrainKeys = pools.pretrain.filter((k) => drawnIn(k, trainStyles).length > 0);
  const pretrain = planScenes(
    options.pretrainScenes,
    pretrainKeys,
    (k) => drawnIn(k, trainStyles),
    new Rng(streams.pretrain),
    { ...ctx, labelsOf: (k) => emojiPlan.labeling.emojiLabels.get(k) ?? [] },
    (i, spec, members, labels) => {
      const n = String(i).padStart(6, '0');
      return { id: `pretrain-${n}`, file: `pretrain/${n}.png`, part: 'pretrain', subset: 'pretrain', spec, members, labels };
    },
  );

  // Single-emoji images of B: the test style only for test emoji, as in the scenes.
  const singles: DatasetItem[] = [];
  const singleIds = { train: [] as string[], val: [] as string[], test: [] as string[] };
  for (const part of ['train', 'val', 'test'] as const) {
    for (const k of parts[part]) {
      const e = entry.get(k)!;
      for (const s of drawnIn(k, part === 'test' ? options.singleStyles : options.singleStyles.filter((x) => x !== options.testStyle))) {
        const id = imageId(e, s);
        singles.push({
          id,
          file: `images/${s}/${k}.png`,
          labels: benchLabels(k),
          meta: {
            style: s,
            emoji: e.emoji,
            hexcode: e.hexcode,
            name: e.name,
            subset: s === options.testStyle ? 'style-transfer' : 'single',
          },
        });
        singleIds[part].push(id);
      }
    }
  }
  const labelSplit = {
    seen: pools.split.seen,
    unseen: pools.split.unseen.map((u) => u.label),
    pseudoUnseen: pools.split.pseudoUnseen,
    seed: options.seed,
  };
  const ids = (part: string) => scenes.filter((s) => s.part === part).map((s) => s.id);
  const split: DatasetSplit = { train: ids('train'), val: ids('val'), test: ids('test'), ...labelSplit };
  return { options, emojiPlan, pools, trainStyles, parts, scenes, pretrain, singles, split, singleSplit: { ...singleIds, ...labelSplit } };
}

/** A scene as a manifest line: the dataset contract plus members with pixel boxes [x, y, w, h]. */
function sceneRecord(s: PlannedScene, S: number): DatasetItem & { extra: Record<string, unknown> } {
  const memberStyles = [...new Set(s.members.map((m) => m.style))];
  return {
    id: s.id,
    file: s.file,
    labels: s.labels,
    meta: {
      style: memberStyles.length === 1 ? memberStyles[0]! : 'mixed',
      subset: s.subset,
      objects: s.members.length,
      background: s.spec.background.kind,
    },
    extra: {
      members: s.members.map((m) => {
        const [x, y, side] = pixelBox(m.box, S);
        return { hexcode: m.hexcode, emoji: m.emoji, name: m.name, style: m.style, box: [x, y, side, side] };
      }),
    },
  };
}

/** The build's identity (checked before planning, so a refusal is immediate): another is refused unless --force. */
function buildStamp(options: Resolved) {
  return { format: 'clip-decoder-emojiscenes', version: 1, options, sources: sourcesOf() };
}

const BUILD_FILE = 'build.json';
const OUTPUTS = [
  BUILD_FILE,
  MANIFEST_FILE,
  SPLIT_FILE,
  'pools.json',
  'stats.json',
  'pretrain-scenes.jsonl',
  'NOTICE',
  'images',
  'pretrain',
  'single',
];

/** Refuses a folder that holds anything but this same build (unless force: then our outputs are removed). */
async function claimFolder(dir: string, stamp: unknown, force: boolean): Promise<void> {
  const text = JSON.stringify(stamp);
  if (existsSync(dir)) {
    const entries = readdirSync(dir);
    if (entries.length > 0) {
      const buildPath = join(dir, BUILD_FILE);
      let old: string | undefined;
      try {
        old = JSON.stringify(JSON.parse(readFileSync(buildPath, 'utf8')));
      } catch {
        old = undefined;
      }
      if (old !== text) {
        // --force replaces a build of ours, never files it did not write: a folder without our build.json is refused.
        if (old === undefined) {
          throw new ClipDecoderError(
            'INPUT_INVALID',
            `--out ${dir} holds files that are not an EmojiScenes build: choose an empty or new folder (--force replaces only a build)`,
            '--out',
          );
        }
        if (!force) {
          throw new ClipDecoderError(
            'INPUT_INVALID',
            `--out ${dir} holds a different EmojiScenes build (other options or package versions): choose another folder, or pass --force to replace it`,
            '--force',
          );
        }
        for (const f of OUTPUTS) await rm(join(dir, f), { recursive: true, force: true });
      }
    }
  }
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, BUILD_FILE), `${JSON.stringify(stamp, null, 2)}\n`);
}

export interface EmojiScenesResult {
  dir: string;
  stats: EmojiScenesStats;
  rendered: number;
  reused: number;
  seconds: number;
}

/** A PNG of raw RGB pixels [S, S, 3]. */
const encodePng = (rgb: Uint8Array, S: number) =>
  sharp(rgb, { raw: { width: S, height: S, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();

export async function buildEmojiScenes(opts: EmojiScenesOptions): Promise<EmojiScenesResult> {
  const t0 = performance.now();
  const dir = opts.out;
  await claimFolder(dir, buildStamp(resolveScenesOptions(opts)), opts.force ?? false);
  const plan = planEmojiScenes(opts);
  const S = plan.options.size;

  const styleByName = new Map(plan.emojiPlan.styles.map((s) => [s.name as string, s]));
  const drawing = (m: SceneMember) => {
    const s = styleByName.get(m.style)!;
    return s.svg(s.iconOf.get(m.key)!);
  };
  const sceneJob = (s: PlannedScene): FileJob => ({ out: join(dir, s.file), render: () => encodePng(drawScene(s.spec, S, drawing), S) });
  const jobs: FileJob[] = [...plan.scenes.map(sceneJob), ...plan.pretrain.map(sceneJob)];
  const entryByHex = new Map(plan.emojiPlan.pool.map((e) => [e.hexcode, e]));
  for (const it of plan.singles) {
    const s = styleByName.get(String(it.meta!.style))!;
    const key = entryByHex.get(String(it.meta!.hexcode))!.key;
    jobs.push({ out: join(dir, 'single', it.file), render: () => renderSvgPng(s.svg(s.iconOf.get(key)!), S) });
  }
  const counts = await writeMissingFiles(jobs, { concurrency: opts.concurrency, onProgress: opts.onProgress });

  // Everything that describes the images is written after them, each file atomically: a killed build leaves
  // no manifest, and a rerun with the same options reuses the images already there.
  const stats = emojiScenesStats(plan);
  const records = plan.scenes.map((s) => sceneRecord(s, S));
  await mkdir(join(dir, 'single'), { recursive: true });
  await writeManifest(join(dir, 'single'), plan.singles);
  await writeSplit(join(dir, 'single'), plan.singleSplit);
  const pretrainLines = plan.pretrain.map((s) => {
    const r = sceneRecord(s, S);
    const labelsOf = plan.emojiPlan.labeling.emojiLabels;
    return JSON.stringify({
      id: s.id,
      file: s.file,
      caption: sceneCaption(s.members),
      words: s.labels,
      members: (r.extra.members as Record<string, unknown>[]).map((m, i) => ({
        ...m,
        key: s.members[i]!.key,
        words: labelsOf.get(s.members[i]!.key) ?? [],
      })),
      spec: s.spec,
    });
  });
  await writeFileAtomic(join(dir, 'pretrain-scenes.jsonl'), pretrainLines.join('\n') + (pretrainLines.length > 0 ? '\n' : ''));
  await writeFileAtomic(join(dir, 'pools.json'), `${JSON.stringify(poolsRecord(plan), null, 1)}\n`);
  const notice = emojiTagsNotice(plan.emojiPlan)
    .replace('EmojiTags: a zero-shot multi-label benchmark', 'EmojiScenes: a zero-shot multi-label benchmark of emoji scenes')
    .replace('Drawings (images/<style>/):', 'Drawings (composed into images/ and pretrain/; alone in single/images/<style>/):');
  await writeFileAtomic(join(dir, 'NOTICE'), notice);
  await writeFileAtomic(join(dir, 'stats.json'), `${JSON.stringify(stats, null, 2)}\n`);
  await writeSplit(dir, plan.split);
  await writeManifest(dir, records, (it) => (it as ReturnType<typeof sceneRecord>).extra);
  return { dir, stats, ...counts, seconds: (performance.now() - t0) / 1000 };
}
