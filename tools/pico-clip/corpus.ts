// The pico-CLIP (v2) pretraining corpus: image-caption items from npm packages only, all from EmojiScenes'
// pretraining pool P (src/data/emoji/pools.ts), never from the benchmark pool B:
//   emoji   P emoji in every pretraining style (all Iconify emoji styles but the benchmark's test-only style,
//           never Fluent), plus their skin-tone variants; caption fields: CLDR name, every keyword (CLDR,
//           emojilib, OpenMoji), the label words, Unicode group/subgroup names.
//   scenes  EmojiScenes' P scenes (1-4 P emoji on varied backgrounds) with compositional captions ("a dog and a
//           red heart") and their members' words and boxes; redrawn here at the corpus size (`drawScene`).
//   icons   Iconify icon sets (one drawing per concept: style variants such as -outline/-bold dropped), caption
//           fields: name words, alias names, tags (tabler, lucide), categories; meta-words (off, filled, ...) out.
// No drawing of a B emoji (same SVG body in any of the eight styles) is ever an item, whatever it comes as:
// `leakCheck` proves it and the index records the proof (pools hash, B emoji, forbidden drawings), which the
// trainer checks again before it reads an image.
// `planCorpus` lists the items without rendering (seconds; the tests run it);
// `node --import tsx tools/pico-clip/corpus.ts --out DIR --size S` renders them to DIR/images.u8 [N, S, S, 3]
// plus DIR/captions.jsonl, and B *validation* singles and scenes (model selection only) to DIR/val*.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { mkdirSync, openSync, writeSync, closeSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Resvg } from '@resvg/resvg-js';
import sharp from 'sharp';
import type { EmojiTagsPlan } from '../../src/data/emoji/build.ts';
import { drawScene, pixelBox } from '../../src/data/emoji/compose.ts';
import type { SceneMember, SceneSpec } from '../../src/data/emoji/compose.ts';
import { planEmojiScenes, sceneCaption } from '../../src/data/emoji/scenes.ts';
import type { EmojiScenesPlan } from '../../src/data/emoji/scenes.ts';
import { poolsRecord } from '../../src/data/emoji/scene-stats.ts';
import { EMOJI_STYLES, squareIcon, svgDocument, svgHash, type IconifySet } from '../../src/data/emoji/sources.ts';
export { svgHash };
import type { EmojiEntry, EmojiStyle, SquareSvg } from '../../src/data/emoji/sources.ts';
import { renderSvgPng } from '../../src/data/emoji/render.ts';
import { writeFileAtomic } from '../../src/util/fs.ts';

const require = createRequire(import.meta.url);

/** Icon sets in Iconify form (devDependencies). Emoji styles come from EmojiTags' own list. */
export const ICON_SETS = ['tabler', 'lucide', 'mdi', 'material-symbols', 'ph', 'game-icons', 'carbon', 'healthicons', 'fa6-solid'] as const;

/** Words that describe how an icon is drawn, not what it shows. */
export const META_WORDS = new Set(
  (
    'off disabled filled fill outline outlined solid bold duotone thin light regular sharp rounded round twotone ' +
    'alt variant line lines negative stroke stroked small big large sm lg xl xs mini tone px dashed dotted ' +
    'slash slashed none empty full half box square circle'
  ).split(' '),
);
/** Name suffixes that mark a style variant of another icon in the same set. */
const VARIANT_SUFFIX =
  /-(outline|outlined|rounded|sharp|outline-rounded|outline-sharp|bold|duotone|fill|filled|light|thin|negative|24px|outline-24px|off|alt|variant|\d+)$/;

export interface CorpusItem {
  /** Unique id: "emoji/<style>/<key>[/<skin>]", "scene/<pretrain id>" or "icon/<set>/<name>". */
  id: string;
  kind: 'emoji' | 'scene' | 'icon';
  set: string;
  /** Emoji: the key of the (base) emoji; scenes: the P scene id; icons: the icon name. */
  key: string;
  /** Caption fields. Scenes: the compositional caption ("a dog and a red heart", members left to right). */
  name: string;
  keywords: string[];
  /** Label words of the emoji (emoji), of every member (scenes). */
  words: string[];
  categories: string[];
  /** Emoji and icons: the drawing in a square view box. */
  svg?: SquareSvg;
  /** Scenes: the layout and, per member, its drawing, name and words (box in fractions of the side). */
  scene?: {
    spec: SceneSpec;
    members: { key: string; style: string; name: string; words: string[]; box: [number, number, number]; svg: SquareSvg }[];
  };
}

/** Every drawing an item shows (one for emoji and icons, one per member for scenes). */
export function drawingsOf(it: CorpusItem): SquareSvg[] {
  return it.scene ? it.scene.members.map((m) => m.svg) : [it.svg!];
}

/** A validation image (B validation part: model selection only, never trained on). */
export interface ValItem {
  id: string;
  kind: 'single' | 'scene';
  name: string;
  labels: string[];
  svg?: SquareSvg;
  scene?: CorpusItem['scene'];
}

export interface CorpusPlan {
  scenesPlan: EmojiScenesPlan;
  emojiPlan: EmojiTagsPlan;
  items: CorpusItem[];
  val: ValItem[];
  licences: Record<string, string>;
  /** What the leak check compares against: B emoji keys and every drawing (sha1 of the SVG body) of them. */
  benchmark: { emoji: string[]; drawings: string[] };
  /** sha256 of the pools.json an EmojiScenes build of the same options writes. */
  poolsHash: string;
}

/** "account-arrow-down" → "account arrow down"; meta-words and digits dropped. */
export function iconPhrase(name: string): string {
  return name
    .split(/[-_\s]+/)
    .filter((w) => /^[a-z]+$/i.test(w) && !META_WORDS.has(w.toLowerCase()))
    .join(' ');
}

function cleanWords(texts: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const t of texts) {
    const p = iconPhrase(t.toLowerCase().replace(/[^a-z0-9\s-]/g, ' '));
    if (p.length >= 2) out.add(p);
  }
  return [...out];
}

function emojiItems(plan: EmojiTagsPlan, keys: ReadonlySet<string>, styleNames: readonly string[], withSkins: boolean): CorpusItem[] {
  const groupMessage = new Map([...plan.data.groups, ...plan.data.subgroups].map((g) => [g.key, g.message]));
  const raw = require('emojibase-data/en/data.json') as { hexcode: string; skins?: { hexcode: string; emoji: string }[] }[];
  const skinsOf = new Map(raw.map((e) => [e.hexcode, e.skins ?? []]));
  const items: CorpusItem[] = [];
  const styles: EmojiStyle[] = plan.styles.filter((st) => styleNames.includes(st.name));
  const charsOf = new Map<string, Record<string, string>>();
  const setOf = new Map<string, IconifySet>();
  for (const s of styles) {
    charsOf.set(s.name, require(`${s.pkg}/chars.json`) as Record<string, string>);
    setOf.set(s.name, require(`${s.pkg}/icons.json`) as IconifySet);
  }
  for (const e of plan.pool as EmojiEntry[]) {
    if (!keys.has(e.key)) continue;
    const keywords = [
      ...new Set(
        [...e.cldrKeywords, ...e.emojilibKeywords.slice(1).map((k) => k.replace(/_/g, ' ')), ...e.openmojiTags].map((k) =>
          k.toLowerCase().trim(),
        ),
      ),
    ].filter((k) => k && k !== e.name.toLowerCase());
    const fields = {
      kind: 'emoji' as const,
      key: e.key,
      name: e.name,
      keywords,
      words: plan.labeling.emojiLabels.get(e.key) ?? [],
      categories: [groupMessage.get(e.group) ?? e.group, groupMessage.get(e.subgroup) ?? e.subgroup],
    };
    for (const s of styles) {
      const icon = s.iconOf.get(e.key);
      if (icon) items.push({ id: `emoji/${s.name}/${e.key}`, set: s.name, svg: s.svg(icon), ...fields });
      if (!withSkins) continue;
      // Skin-tone variants of the same emoji: sets with a codepoint table draw them.
      const chars = charsOf.get(s.name)!;
      const set = setOf.get(s.name)!;
      for (const skin of skinsOf.get(e.hexcode) ?? []) {
        const name =
          chars[
            skin.hexcode
              .toLowerCase()
              .split('-')
              .filter((p) => p !== 'fe0f')
              .join('-')
          ];
        if (!name || !set.icons[name]) continue;
        items.push({ id: `emoji/${s.name}/${e.key}/${skin.hexcode.toLowerCase()}`, set: s.name, svg: squareIcon(set, name), ...fields });
      }
    }
  }
  return items;
}

function iconItems(setName: string): CorpusItem[] {
  const set = require(`@iconify-json/${setName}/icons.json`) as IconifySet;
  const meta = require(`@iconify-json/${setName}/metadata.json`) as { categories?: Record<string, string[]> };
  const categoryOf = new Map<string, string[]>();
  for (const [cat, names] of Object.entries(meta.categories ?? {})) {
    for (const n of names) (categoryOf.get(n) ?? categoryOf.set(n, []).get(n)!).push(cat);
  }
  const aliasesOf = new Map<string, string[]>();
  for (const [alias, a] of Object.entries(set.aliases ?? {}))
    (aliasesOf.get(a.parent) ?? aliasesOf.set(a.parent, []).get(a.parent)!).push(alias);
  let tagsOf = new Map<string, { tags: string[]; category?: string }>();
  if (setName === 'tabler') {
    const t = require('@tabler/icons/icons.json') as Record<string, { name: string; category?: string; tags?: (string | number)[] }>;
    tagsOf = new Map(Object.values(t).map((v) => [v.name, { tags: (v.tags ?? []).map(String), category: v.category }]));
  } else if (setName === 'lucide') {
    const t = require('lucide-static/tags.json') as Record<string, string[]>;
    tagsOf = new Map(Object.entries(t).map(([k, v]) => [k, { tags: v }]));
  }
  const names = Object.keys(set.icons).sort();
  const have = new Set(names);
  const items: CorpusItem[] = [];
  const seenPhrase = new Set<string>();
  for (const name of names) {
    // A style variant of an icon the set also has in its plain form adds a drawing, not a concept.
    const m = VARIANT_SUFFIX.exec(name);
    if (m && have.has(name.slice(0, m.index))) continue;
    const phrase = iconPhrase(name);
    if (phrase.length < 2 || /^[a-z]$/.test(phrase)) continue;
    if (setName === 'game-icons' && /^abstract/.test(name)) continue;
    const t = tagsOf.get(name);
    const cats = [...(categoryOf.get(name) ?? []), ...(t?.category ? [t.category] : [])];
    const keywords = cleanWords([...(aliasesOf.get(name) ?? []), ...(t?.tags ?? [])]).filter((k) => k !== phrase);
    // Several drawings sharing the same caption fields teach nothing new: keep the first.
    const sig = `${phrase}|${keywords.join(',')}`;
    if (seenPhrase.has(sig)) continue;
    seenPhrase.add(sig);
    items.push({
      id: `icon/${setName}/${name}`,
      kind: 'icon',
      set: setName,
      key: name,
      name: phrase,
      keywords,
      words: [],
      categories: cleanWords(cats.flatMap((c) => c.split(/\s*[/&,]\s*/))),
      svg: squareIcon(set, name),
    });
  }
  return items;
}

export interface CorpusOptions {
  /** Icon sets (default ICON_SETS). */
  iconSets?: readonly string[];
  /** Add skin-tone variants of P emoji (default true). */
  skins?: boolean;
  /** P scenes (a prefix of EmojiScenes' pretrain-scenes.jsonl; default 6000, its default count). */
  scenes?: number;
  /** B validation scenes for model selection (default 500). */
  valScenes?: number;
}

export class CorpusLeakError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CorpusLeakError';
  }
}

/**
 * Throws CorpusLeakError naming the first item that shows a B emoji (by key, or by drawing in any style), uses
 * the test-only style or a Fluent set. Returns what was checked, for the index.
 */
export function leakCheck(
  items: readonly CorpusItem[],
  benchmark: CorpusPlan['benchmark'],
  testStyle: string,
): { items: number; drawings: number; benchmarkEmoji: number; forbiddenDrawings: number } {
  const bKeys = new Set(benchmark.emoji);
  const bDrawings = new Set(benchmark.drawings);
  let drawings = 0;
  for (const it of items) {
    if (it.set.includes('fluent')) throw new CorpusLeakError(`${it.id}: a Fluent emoji set is reserved for independent evaluation`);
    if (it.set === testStyle) throw new CorpusLeakError(`${it.id}: ${testStyle} is the benchmark's test-only style`);
    const keys = it.kind === 'emoji' ? [it.key] : (it.scene?.members.map((m) => m.key) ?? []);
    for (const k of keys) if (bKeys.has(k)) throw new CorpusLeakError(`${it.id}: emoji ${k} is in the benchmark pool B`);
    for (const m of it.scene?.members ?? [])
      if (m.style === testStyle || m.style.includes('fluent')) throw new CorpusLeakError(`${it.id}: member ${m.key} in style ${m.style}`);
    for (const d of drawingsOf(it)) {
      drawings++;
      if (bDrawings.has(svgHash(d)))
        throw new CorpusLeakError(`${it.id}: draws a benchmark (B) emoji (same SVG body as one of its drawings)`);
    }
  }
  return { items: items.length, drawings, benchmarkEmoji: bKeys.size, forbiddenDrawings: bDrawings.size };
}

export function planCorpus(options: CorpusOptions = {}): CorpusPlan {
  // EmojiScenes' default build (seed 0) is the benchmark: its pools decide what CLIP may see.
  const scenesPlan = planEmojiScenes({ pretrainScenes: options.scenes ?? 6000 });
  const emojiPlan = scenesPlan.emojiPlan;
  const styleByName = new Map(emojiPlan.styles.map((s) => [s.name as string, s]));
  const drawing = (m: SceneMember) => {
    const st = styleByName.get(m.style)!;
    return st.svg(st.iconOf.get(m.key)!);
  };
  // B's drawings in all eight styles (the test-only one too): no item may show one, whichever emoji or icon it
  // comes as (noto-v1 draws "person bowing" and "man bowing" alike).
  const bDrawings = new Set<string>();
  for (const name of EMOJI_STYLES) {
    const st = styleByName.get(name);
    if (!st) continue;
    for (const k of scenesPlan.pools.benchmark) {
      const icon = st.iconOf.get(k);
      if (icon) bDrawings.add(svgHash(st.svg(icon)));
    }
  }
  const benchmark = { emoji: [...scenesPlan.pools.benchmark], drawings: [...bDrawings].sort() };
  const keep = (it: CorpusItem) => drawingsOf(it).every((d) => !bDrawings.has(svgHash(d)));

  const items = emojiItems(emojiPlan, new Set(scenesPlan.pools.pretrain), scenesPlan.trainStyles, options.skins ?? true).filter(keep);
  const labelsOf = emojiPlan.labeling.emojiLabels;
  const sceneOf = (spec: SceneSpec, members: { key: string; name: string }[]) => ({
    spec,
    members: spec.members.map((m, i) => ({
      key: m.key,
      style: m.style,
      name: members[i]!.name,
      words: labelsOf.get(m.key) ?? [],
      box: m.box,
      svg: drawing(m),
    })),
  });
  for (const s of scenesPlan.pretrain) {
    items.push({
      id: `scene/${s.id}`,
      kind: 'scene',
      set: 'emojiscenes-p',
      key: s.id,
      name: sceneCaption(s.members),
      keywords: [],
      words: s.labels,
      categories: [],
      scene: sceneOf(s.spec, s.members),
    });
  }
  const licences: Record<string, string> = {};
  for (const s of emojiPlan.styles)
    if (scenesPlan.trainStyles.includes(s.name)) licences[s.name] = `${s.pkg}: ${s.info.license.spdx ?? s.info.license.title}`;
  for (const setName of options.iconSets ?? ICON_SETS) {
    items.push(...iconItems(setName).filter(keep));
    const info = require(`@iconify-json/${setName}/info.json`) as { license: { spdx?: string; title: string } };
    licences[setName] = `@iconify-json/${setName}: ${info.license.spdx ?? info.license.title}`;
  }

  // Validation: B *validation* emoji alone (in the pretraining styles) and B validation scenes.
  const vocab = new Set(scenesPlan.pools.vocabulary);
  const benchLabels = (k: string) => (labelsOf.get(k) ?? []).filter((l) => vocab.has(l));
  const entryOf = new Map(emojiPlan.pool.map((e) => [e.key, e]));
  const val: ValItem[] = [];
  for (const k of scenesPlan.parts.val) {
    for (const st of scenesPlan.trainStyles) {
      const style = styleByName.get(st)!;
      const icon = style.iconOf.get(k);
      if (icon)
        val.push({ id: `single/${st}/${k}`, kind: 'single', name: entryOf.get(k)!.name, labels: benchLabels(k), svg: style.svg(icon) });
    }
  }
  for (const s of scenesPlan.scenes.filter((x) => x.part === 'val').slice(0, options.valScenes ?? 500)) {
    val.push({ id: s.id, kind: 'scene', name: sceneCaption(s.members), labels: s.labels, scene: sceneOf(s.spec, s.members) });
  }
  const poolsHash = createHash('sha256')
    .update(`${JSON.stringify(poolsRecord(scenesPlan), null, 1)}\n`)
    .digest('hex');
  return { scenesPlan, emojiPlan, items, val, licences, benchmark, poolsHash };
}

/** Raw RGB pixels [S, S, 3]. Emoji: a resvg render at S on white (as EmojiScenes' single images); scenes: drawn
 * at S by the EmojiScenes composer; icons: drawn at S on white. */
async function pixelsOf(it: CorpusItem | ValItem, S: number): Promise<Buffer> {
  if (it.scene) return Buffer.from(drawScene(it.scene.spec, S, (m) => it.scene!.members.find((x) => x.key === m.key)!.svg));
  if (it.kind === 'emoji' || it.kind === 'single') {
    const png = await renderSvgPng(it.svg!, S);
    return sharp(png).flatten({ background: '#ffffff' }).removeAlpha().raw().toBuffer();
  }
  const img = new Resvg(svgDocument(it.svg!), {
    background: 'white',
    fitTo: { mode: 'width', value: S },
    font: { loadSystemFonts: false },
    logLevel: 'off',
  }).render();
  const rgba = img.pixels;
  const out = Buffer.alloc(S * S * 3);
  for (let i = 0, j = 0; i < S * S; i++, j += 4) {
    out[i * 3] = rgba[j]!;
    out[i * 3 + 1] = rgba[j + 1]!;
    out[i * 3 + 2] = rgba[j + 2]!;
  }
  return out;
}

async function writeImages(items: (CorpusItem | ValItem)[], S: number, path: string, onProgress: (n: number) => void): Promise<void> {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    for (let i = 0; i < items.length; i++) {
      const px = await pixelsOf(items[i]!, S);
      if (px.length !== S * S * 3) throw new Error(`${items[i]!.id}: rendered ${px.length} bytes, expected ${S * S * 3}`);
      writeSync(fd, px);
      if (i % 2000 === 0) onProgress(i);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** A captions.jsonl line: caption fields, the drawing hashes (the trainer re-runs the leak check on them) and,
 * for scenes, the members with boxes in fractions of the side [x, y, side]. */
function captionRecord(it: CorpusItem): string {
  const members = it.scene?.members.map((m) => ({ key: m.key, style: m.style, name: m.name, words: m.words, box: m.box }));
  return JSON.stringify({
    id: it.id,
    kind: it.kind,
    set: it.set,
    key: it.key,
    name: it.name,
    keywords: it.keywords,
    words: it.words,
    categories: it.categories,
    drawings: drawingsOf(it).map(svgHash),
    ...(members ? { members } : {}),
  });
}

function valRecord(it: ValItem, S: number): string {
  const members = it.scene?.members.map((m) => ({ key: m.key, name: m.name, box: pixelBox(m.box, S) }));
  return JSON.stringify({ id: it.id, kind: it.kind, name: it.name, labels: it.labels, ...(members ? { members } : {}) });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      size: { type: 'string', default: '128' },
      'icon-sets': { type: 'string' },
      'no-skins': { type: 'boolean', default: false },
      scenes: { type: 'string', default: '6000' },
      'val-scenes': { type: 'string', default: '500' },
    },
  });
  const usage = 'usage: corpus.ts --out DIR [--size 128] [--scenes 6000] [--val-scenes 500] [--icon-sets tabler,lucide,...] [--no-skins]';
  if (!values.out) throw new Error(`--out is required; ${usage}`);
  const int = (flag: string, v: string, lo: number, hi: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new Error(`--${flag} must be an integer in ${lo}..${hi}, got ${JSON.stringify(v)}`);
    return n;
  };
  const S = int('size', values.size!, 16, 512);
  const t0 = performance.now();
  const plan = planCorpus({
    iconSets: values['icon-sets']?.split(',').filter(Boolean),
    skins: !values['no-skins'],
    scenes: int('scenes', values.scenes!, 0, 1_000_000),
    valScenes: int('val-scenes', values['val-scenes']!, 0, 100_000),
  });
  const log = (msg: string) => process.stderr.write(`[corpus ${((performance.now() - t0) / 1000).toFixed(0)}s] ${msg}\n`);
  // Validate before writing anything: a corpus that shows a B drawing is never written.
  const testStyle = plan.scenesPlan.options.testStyle;
  const checked = leakCheck(plan.items, plan.benchmark, testStyle);
  mkdirSync(values.out, { recursive: true });
  const counts: Record<string, number> = {};
  for (const it of plan.items) counts[it.set] = (counts[it.set] ?? 0) + 1;
  log(
    `${plan.items.length} items (${JSON.stringify(counts)}), ${plan.val.length} validation images; leak check passed (${checked.drawings} drawings against ${checked.forbiddenDrawings} B drawings)`,
  );

  await writeImages(plan.items, S, join(values.out, 'images.u8'), (n) => log(`rendered ${n}/${plan.items.length}`));
  await writeFileAtomic(join(values.out, 'captions.jsonl'), `${plan.items.map((it) => captionRecord(it)).join('\n')}\n`);
  await writeImages(plan.val, S, join(values.out, 'val.u8'), () => {});
  await writeFileAtomic(join(values.out, 'val.jsonl'), `${plan.val.map((it) => valRecord(it, S)).join('\n')}\n`);
  const split = plan.scenesPlan.split;
  const index = {
    format: 'pico-clip-corpus',
    version: 2,
    size: S,
    items: plan.items.length,
    val: plan.val.length,
    perKind: Object.fromEntries(['emoji', 'scene', 'icon'].map((k) => [k, plan.items.filter((it) => it.kind === k).length])),
    perSet: counts,
    licences: plan.licences,
    pools: {
      source: 'EmojiScenes default build (seed 0): planEmojiScenes()',
      poolsHash: plan.poolsHash,
      testOnlyStyle: testStyle,
      pretrainStyles: plan.scenesPlan.trainStyles,
      pretrainEmoji: plan.scenesPlan.pools.pretrain.length,
      benchmarkEmoji: plan.benchmark.emoji.length,
    },
    // the emoji whose drawings are in images.u8, alone or in scenes (tests/pico-clip-corpus.test.ts checks them against P)
    pretrainEmoji: [
      ...new Set(plan.items.flatMap((it) => (it.kind === 'emoji' ? [it.key] : (it.scene?.members.map((m) => m.key) ?? [])))),
    ].sort(),
    // what the trainer checks captions.jsonl against before it trains (tools/pico-clip/train.py)
    leakCheck: { passed: true, ...checked, benchmark: plan.benchmark },
    labels: { seen: split.seen, unseen: split.unseen, pseudoUnseen: split.pseudoUnseen },
    seconds: Math.round((performance.now() - t0) / 1000),
  };
  await writeFileAtomic(join(values.out, 'index.json'), `${JSON.stringify(index)}\n`);
  log(`done: ${values.out}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
