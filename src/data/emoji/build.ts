// Builds EmojiTags, the zero-shot multi-label benchmark made only of npm packages: every emoji drawn in Noto,
// Twemoji and OpenMoji (plus the other Iconify styles where they draw it) is an image per style, labelled with the
// normalised keywords people attach to it. `planEmojiTags` computes labels and split without rendering (fast,
// deterministic); `buildEmojiTags` renders and writes the dataset folder.
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipDecoderError } from '../../errors.ts';
import { writeFileAtomic } from '../../util/fs.ts';
import { normalizeLabelWord } from '../text.ts';
import { writeManifest, writeSplit } from '../manifest.ts';
import type { DatasetItem, DatasetSplit } from '../types.ts';
import { CORE_STYLES, EMOJI_STYLES, loadEmojiData, loadEmojiStyle, packageLicense, packageVersion } from './sources.ts';
import type { EmojiData, EmojiEntry, EmojiStyle, EmojiStyleName } from './sources.ts';
import { computeEmojiLabels } from './labels.ts';
import type { EmojiLabeling } from './labels.ts';
import { splitEmoji } from './split.ts';
import type { EmojiSplit } from './split.ts';
import { prepareRenderDir, renderAll } from './render.ts';

/** The NUS-WIDE concept list shipped with the package (its words become EmojiTags' unseen labels). */
export const CONCEPTS81_PATH = fileURLToPath(new URL('../nus-wide/Concepts81.txt', import.meta.url));

export interface EmojiTagsOptions {
  /** Output folder (created). */
  out: string;
  /** Render size in pixels (square). Default 224. */
  size?: number;
  /** Keep labels with at least this many positive emoji. Default 8. */
  minPositives?: number;
  seed?: number;
  /** Styles to render; labels and split do not depend on it. Default: all of EMOJI_STYLES. */
  styles?: readonly string[];
  /** Only the first N emoji (spread over train/val/test in proportion), for quick builds and tests. */
  limit?: number;
  testFraction?: number;
  valFraction?: number;
  minUnseen?: number;
  minTestPositives?: number;
  /** Renders in flight. Default: min(4, cores). */
  concurrency?: number;
  /** Called as images are rendered (the CLI draws a bar from it). */
  onProgress?: (done: number, total: number) => void;
}

export interface EmojiTagsPlan {
  data: EmojiData;
  styles: EmojiStyle[];
  /** Emoji in the benchmark (drawn in every core style, with at least one label), in emojibase order. */
  pool: EmojiEntry[];
  /** Emoji drawn in every core style but left out for having no label. */
  unlabelled: EmojiEntry[];
  labeling: EmojiLabeling;
  split: EmojiSplit;
  /** Dataset items (one per emoji × rendered style) and their split, after `limit`. */
  items: DatasetItem[];
  datasetSplit: DatasetSplit;
  options: Required<Omit<EmojiTagsOptions, 'out' | 'limit' | 'concurrency' | 'onProgress'>> & { limit?: number };
}

export interface EmojiTagsStats {
  options: { size: number; minPositives: number; seed: number; styles: string[]; limit: number | null };
  emoji: { total: number; train: number; val: number; test: number; unlabelledLeftOut: string[] };
  images: { total: number; train: number; val: number; test: number; perStyle: Record<string, number> };
  labels: {
    /** Distinct normalised keyword words before the positives threshold. */
    candidateWords: number;
    total: number;
    seen: number;
    unseen: number;
    pseudoUnseen: number;
    perEmoji: number;
    unseenFromConcepts: number;
    unseenFromSubgroups: number;
    unseenWithMinTestPositives: number;
  };
  unseen: { label: string; source: 'concept' | 'subgroup'; positives: number; testEmoji: number; testImages: number }[];
  pseudoUnseen: { label: string; valEmoji: number }[];
  sources: Record<string, string>;
}

export function resolveStyles(styles: readonly string[] | undefined, flag = '--styles'): EmojiStyleName[] {
  if (!styles || styles.length === 0) return [...EMOJI_STYLES];
  const out: EmojiStyleName[] = [];
  for (const s of styles) {
    if (s.startsWith('fluent')) {
      throw new ClipDecoderError(
        'BAD_PARAMETER',
        `${flag} ${s}: the Fluent emoji sets are reserved for independent evaluation and never used by EmojiTags`,
        flag,
      );
    }
    if (!(EMOJI_STYLES as readonly string[]).includes(s)) {
      throw new ClipDecoderError('BAD_PARAMETER', `${flag}: unknown style "${s}"; choose from ${EMOJI_STYLES.join(', ')}`, flag);
    }
    if (!out.includes(s as EmojiStyleName)) out.push(s as EmojiStyleName);
  }
  return EMOJI_STYLES.filter((s) => out.includes(s));
}

export function readConceptWords(path = CONCEPTS81_PATH): string[] {
  return readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .map((l) => normalizeLabelWord(l.trim()))
    .filter((w): w is string => w !== null);
}

export function imageId(e: EmojiEntry, style: string): string {
  return `${e.key}_${style}`;
}

export function planEmojiTags(opts: Omit<EmojiTagsOptions, 'out'> = {}): EmojiTagsPlan {
  const options = {
    size: opts.size ?? 224,
    minPositives: opts.minPositives ?? 8,
    seed: opts.seed ?? 0,
    styles: resolveStyles(opts.styles),
    testFraction: opts.testFraction ?? 0.3,
    valFraction: opts.valFraction ?? 0.15,
    minUnseen: opts.minUnseen ?? 50,
    minTestPositives: opts.minTestPositives ?? 2,
    ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
  };
  if (!Number.isInteger(options.size) || options.size < 8 || options.size > 4096)
    throw new ClipDecoderError('BAD_PARAMETER', `--size must be an integer in 8..4096, got ${options.size}`, '--size');
  if (!Number.isInteger(options.minPositives) || options.minPositives < 1)
    throw new ClipDecoderError(
      'BAD_PARAMETER',
      `--min-positives must be a positive integer, got ${options.minPositives}`,
      '--min-positives',
    );

  const data = loadEmojiData();
  // Core styles are always loaded: they decide which emoji are in the benchmark, whatever is rendered.
  const wanted = EMOJI_STYLES.filter((s) => CORE_STYLES.includes(s) || options.styles.includes(s));
  const styles = wanted.map((s) => loadEmojiStyle(s, data.emoji));
  const core = styles.filter((s) => CORE_STYLES.includes(s.name));
  const drawn = data.emoji.filter((e) => core.every((s) => s.iconOf.has(e.key)));
  const labeling = computeEmojiLabels(drawn, data.groups, data.subgroups, { minPositives: options.minPositives });
  // An emoji none of whose keywords is frequent enough has no label: it is left out (a few, e.g. "oil drum").
  const pool = drawn.filter((e) => labeling.emojiLabels.get(e.key)!.length > 0);
  const split = splitEmoji(
    pool.map((e) => e.key),
    labeling,
    { ...options, conceptWords: readConceptWords() },
  );

  // Which emoji get images: all, or the first `limit` spread over the parts in proportion.
  let chosen = new Set(pool.map((e) => e.key));
  if (options.limit !== undefined) {
    const n = Math.max(0, Math.floor(options.limit));
    const parts = [split.train, split.val, split.test];
    chosen = new Set(parts.flatMap((p) => p.slice(0, Math.max(n >= 3 ? 1 : 0, Math.round((n * p.length) / pool.length)))));
  }
  const partOf = new Map<string, 'train' | 'val' | 'test'>();
  for (const p of ['train', 'val', 'test'] as const) for (const k of split[p]) partOf.set(k, p);
  const rendered = styles.filter((s) => options.styles.includes(s.name));
  const items: DatasetItem[] = [];
  const ids = { train: [] as string[], val: [] as string[], test: [] as string[] };
  for (const e of pool) {
    if (!chosen.has(e.key)) continue;
    for (const s of rendered) {
      if (!s.iconOf.has(e.key)) continue;
      const id = imageId(e, s.name);
      items.push({
        id,
        file: `images/${s.name}/${e.key}.png`,
        labels: labeling.emojiLabels.get(e.key)!,
        meta: { style: s.name, emoji: e.emoji, hexcode: e.hexcode, name: e.name, group: e.group, subgroup: e.subgroup },
      });
      ids[partOf.get(e.key)!].push(id);
    }
  }
  const datasetSplit: DatasetSplit = {
    ...ids,
    seen: split.seen,
    unseen: split.unseen.map((u) => u.label),
    pseudoUnseen: split.pseudoUnseen,
    seed: options.seed,
  };
  const unlabelled = drawn.filter((e) => labeling.emojiLabels.get(e.key)!.length === 0);
  return { data, styles: rendered, pool, unlabelled, labeling, split, items, datasetSplit, options };
}

export function emojiTagsStats(plan: EmojiTagsPlan): EmojiTagsStats {
  const { items, datasetSplit, labeling, split, options } = plan;
  const itemById = new Map(items.map((it) => [it.id, it]));
  const perStyle: Record<string, number> = {};
  for (const s of plan.styles) perStyle[s.name] = 0; // in style order
  for (const it of items) perStyle[String(it.meta!.style)]! += 1;
  const testKeys = new Set(split.test);
  const valKeys = new Set(split.val);
  const count = (l: string, part: Set<string>) => [...labeling.positives.get(l)!].filter((k) => part.has(k)).length;
  const testItems = datasetSplit.test.map((id) => itemById.get(id)!);
  const unseen = split.unseen.map((u) => ({
    label: u.label,
    source: u.source,
    positives: labeling.positives.get(u.label)!.size,
    testEmoji: count(u.label, testKeys),
    testImages: testItems.filter((it) => it.labels.includes(u.label)).length,
  }));
  let labelCount = 0;
  for (const e of plan.pool) labelCount += labeling.emojiLabels.get(e.key)!.length;
  const sources: Record<string, string> = { ...plan.data.versions, '@resvg/resvg-js': packageVersion('@resvg/resvg-js') };
  for (const s of plan.styles) sources[s.pkg] = s.version;
  return {
    options: {
      size: options.size,
      minPositives: options.minPositives,
      seed: options.seed,
      styles: [...options.styles],
      limit: options.limit ?? null,
    },
    emoji: {
      total: plan.pool.length,
      train: split.train.length,
      val: split.val.length,
      test: split.test.length,
      unlabelledLeftOut: plan.unlabelled.map((e) => `${e.emoji} ${e.name}`),
    },
    images: {
      total: items.length,
      train: datasetSplit.train.length,
      val: datasetSplit.val.length,
      test: datasetSplit.test.length,
      perStyle,
    },
    labels: {
      candidateWords: labeling.keywordWords,
      total: labeling.labels.length,
      seen: split.seen.length,
      unseen: split.unseen.length,
      pseudoUnseen: split.pseudoUnseen.length,
      perEmoji: Math.round((labelCount / Math.max(1, plan.pool.length)) * 100) / 100,
      unseenFromConcepts: split.unseen.filter((u) => u.source === 'concept').length,
      unseenFromSubgroups: split.unseen.filter((u) => u.source === 'subgroup').length,
      unseenWithMinTestPositives: unseen.filter((u) => u.testEmoji >= options.minTestPositives).length,
    },
    unseen,
    pseudoUnseen: split.pseudoUnseen.map((l) => ({ label: l, valEmoji: count(l, valKeys) })),
    sources,
  };
}

export function emojiTagsNotice(plan: EmojiTagsPlan): string {
  const lines = [
    'EmojiTags: a zero-shot multi-label benchmark built by clip-decoder from npm packages.',
    "Every image is a render of a third-party drawing and keeps that drawing's licence (below). Keep this NOTICE",
    'with the images. Styles under CC BY-SA 4.0 are share-alike: renders of them may only be shared under the same',
    'licence, with attribution. Do not commit the renders to a repository under another licence.',
    '',
    'Drawings (images/<style>/):',
  ];
  for (const s of plan.styles) {
    const author = s.info.author ? `${s.info.author.name}${s.info.author.url ? ` (${s.info.author.url})` : ''}` : 'unknown author';
    const lic = s.info.license;
    lines.push(
      `- ${s.name}: "${s.info.name}" by ${author}; npm ${s.pkg}@${s.version}; licence ${lic.title}${lic.spdx ? ` (${lic.spdx})` : ''}${lic.url ? `, ${lic.url}` : ''}`,
    );
  }
  lines.push(
    '',
    'Labels, names and groups:',
    `- emojibase-data@${plan.data.versions['emojibase-data']} (${packageLicense('emojibase-data')}): CLDR names and keywords, Unicode groups and subgroups, shortcodes. CLDR data © Unicode, Inc., Unicode License v3.`,
    `- emojilib@${plan.data.versions.emojilib} (${packageLicense('emojilib')}): keywords.`,
    `- openmoji@${plan.data.versions.openmoji} data/openmoji.json (${packageLicense('openmoji')}): tags and OpenMoji tags.`,
    '- NUS-WIDE Concepts81 list (the 81 concept names of the NUS-WIDE dataset, National University of Singapore): words chosen as unseen labels.',
    '',
    `Rendered with @resvg/resvg-js@${packageVersion('@resvg/resvg-js')} (MPL-2.0).`,
  );
  return `${lines.join('\n')}\n`;
}

export interface EmojiTagsResult {
  dir: string;
  stats: EmojiTagsStats;
  rendered: number;
  reused: number;
  seconds: number;
}

export async function buildEmojiTags(opts: EmojiTagsOptions): Promise<EmojiTagsResult> {
  const t0 = performance.now();
  const plan = planEmojiTags(opts);
  const dir = opts.out;
  await mkdir(dir, { recursive: true });
  const imagesDir = join(dir, 'images');
  const styleVersions: Record<string, string> = {};
  for (const s of plan.styles) styleVersions[s.name] = `${s.pkg}@${s.version}`;
  await prepareRenderDir(imagesDir, {
    size: plan.options.size,
    renderer: `@resvg/resvg-js@${packageVersion('@resvg/resvg-js')}`,
    styles: styleVersions,
  });

  const styleByName = new Map(plan.styles.map((s) => [s.name as string, s]));
  const entryByHex = new Map(plan.pool.map((e) => [e.hexcode, e]));
  const jobs = plan.items.map((it) => {
    const style = styleByName.get(String(it.meta!.style))!;
    const entry = entryByHex.get(String(it.meta!.hexcode))!;
    return { out: join(dir, it.file), svg: () => style.svg(style.iconOf.get(entry.key)!) };
  });
  const counts = await renderAll(jobs, { size: plan.options.size, concurrency: opts.concurrency, onProgress: opts.onProgress });

  const stats = emojiTagsStats(plan);
  await writeManifest(dir, plan.items);
  await writeSplit(dir, plan.datasetSplit);
  await writeFileAtomic(join(dir, 'NOTICE'), emojiTagsNotice(plan));
  await writeFileAtomic(join(dir, 'stats.json'), `${JSON.stringify(stats, null, 2)}\n`);
  return { dir, stats, ...counts, seconds: (performance.now() - t0) / 1000 };
}
