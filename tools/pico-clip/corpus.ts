// The pico-CLIP pretraining corpus: image-caption sources from npm packages only.
//   emoji  EmojiTags TRAIN-split emoji (never val or test) in every Iconify emoji style, plus their skin-tone
//          variants; caption fields: CLDR name, every keyword (CLDR, emojilib, OpenMoji), the EmojiTags label
//          words, Unicode group/subgroup names.
//   icons  Iconify icon sets (one drawing per concept: style variants such as -outline/-bold dropped), caption
//          fields: name words, alias names, tags (tabler, lucide), categories; meta-words (off, filled, ...) out.
// `planCorpus` lists the items and their caption fields without rendering (fast; the leak test runs it);
// `node --import tsx tools/pico-clip/corpus.ts --out DIR --size S` renders them to DIR/images.u8 [N, S, S, 3]
// plus DIR/captions.jsonl, and the validation emoji (for model selection) to DIR/val.u8 + DIR/val.jsonl.
import { createRequire } from 'node:module';
import { mkdirSync, openSync, writeSync, closeSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Resvg } from '@resvg/resvg-js';
import sharp from 'sharp';
import { planEmojiTags } from '../../src/data/emoji/build.ts';
import type { EmojiTagsPlan } from '../../src/data/emoji/build.ts';
import { EMOJI_STYLES, loadEmojiStyle, squareIcon, svgDocument, svgHash, type IconifySet } from '../../src/data/emoji/sources.ts';
export { svgHash };
import type { EmojiEntry, EmojiStyle, SquareSvg } from '../../src/data/emoji/sources.ts';
import { renderSvgPng } from '../../src/data/emoji/render.ts';
import { writeFileAtomic } from '../../src/util/fs.ts';

const require = createRequire(import.meta.url);

/** Icon sets in Iconify form (devDependencies). Emoji styles come from EmojiTags' own list. */
export const ICON_SETS = ['tabler', 'lucide', 'mdi', 'material-symbols', 'ph', 'game-icons', 'carbon', 'healthicons', 'fa6-solid'] as const;

/** Words that describe how an icon is drawn, not what it shows. */
export const META_WORDS = new Set(
  ('off disabled filled fill outline outlined solid bold duotone thin light regular sharp rounded round twotone ' +
    'alt variant line lines negative stroke stroked small big large sm lg xl xs mini tone px dashed dotted ' +
    'slash slashed none empty full half box square circle').split(' '),
);
/** Name suffixes that mark a style variant of another icon in the same set. */
const VARIANT_SUFFIX = /-(outline|outlined|rounded|sharp|outline-rounded|outline-sharp|bold|duotone|fill|filled|light|thin|negative|24px|outline-24px|off|alt|variant|\d+)$/;

export interface CorpusItem {
  /** Unique id: "emoji/<style>/<key>[/<skin>]" or "icon/<set>/<name>". */
  id: string;
  kind: 'emoji' | 'icon';
  set: string;
  /** Emoji: the EmojiTags key of the (base) emoji; icons: the icon name. */
  key: string;
  /** Caption fields. */
  name: string;
  keywords: string[];
  /** EmojiTags label words of the emoji (emoji only). */
  words: string[];
  categories: string[];
  /** Drawing in a square view box. */
  svg: SquareSvg;
}

export interface CorpusPlan {
  emojiPlan: EmojiTagsPlan;
  items: CorpusItem[];
  /** Validation emoji (never pretrained on): images for model selection. */
  val: CorpusItem[];
  licences: Record<string, string>;
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

function emojiItems(plan: EmojiTagsPlan, keys: ReadonlySet<string>, withSkins: boolean): CorpusItem[] {
  const groupMessage = new Map([...plan.data.groups, ...plan.data.subgroups].map((g) => [g.key, g.message]));
  const raw = require('emojibase-data/en/data.json') as { hexcode: string; skins?: { hexcode: string; emoji: string }[] }[];
  const skinsOf = new Map(raw.map((e) => [e.hexcode, e.skins ?? []]));
  const items: CorpusItem[] = [];
  const styles: EmojiStyle[] = plan.styles;
  const charsOf = new Map<string, Record<string, string>>();
  const setOf = new Map<string, IconifySet>();
  for (const s of styles) {
    charsOf.set(s.name, require(`${s.pkg}/chars.json`) as Record<string, string>);
    setOf.set(s.name, require(`${s.pkg}/icons.json`) as IconifySet);
  }
  for (const e of plan.pool as EmojiEntry[]) {
    if (!keys.has(e.key)) continue;
    const keywords = [...new Set([...e.cldrKeywords, ...e.emojilibKeywords.slice(1).map((k) => k.replace(/_/g, ' ')), ...e.openmojiTags].map((k) => k.toLowerCase().trim()))].filter((k) => k && k !== e.name.toLowerCase());
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
        const name = chars[skin.hexcode.toLowerCase().split('-').filter((p) => p !== 'fe0f').join('-')];
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
  for (const [alias, a] of Object.entries(set.aliases ?? {})) (aliasesOf.get(a.parent) ?? aliasesOf.set(a.parent, []).get(a.parent)!).push(alias);
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
  /** Add skin-tone variants of train emoji (default true). */
  skins?: boolean;
}

export function planCorpus(options: CorpusOptions = {}): CorpusPlan {
  const emojiPlan = planEmojiTags(); // the default split (seed 0) is the benchmark split
  const train = new Set(emojiPlan.split.train);
  const val = new Set(emojiPlan.split.val);
  const valItems = emojiItems(emojiPlan, val, false);
  // Some styles draw two emoji alike (noto-v1's "person bowing" is its "man bowing"): a drawing that any style
  // uses for a test or validation emoji is left out, whichever emoji or icon it comes as.
  const heldOut = new Set<string>();
  for (const name of EMOJI_STYLES) {
    const style = loadEmojiStyle(name, emojiPlan.data.emoji);
    for (const k of [...emojiPlan.split.test, ...emojiPlan.split.val]) {
      const icon = style.iconOf.get(k);
      if (icon) heldOut.add(svgHash(style.svg(icon)));
    }
  }
  const keep = (it: CorpusItem) => !heldOut.has(svgHash(it.svg));
  const items = emojiItems(emojiPlan, train, options.skins ?? true).filter(keep);
  const licences: Record<string, string> = {};
  for (const s of emojiPlan.styles) licences[s.name] = `${s.pkg}: ${s.info.license.spdx ?? s.info.license.title}`;
  for (const setName of options.iconSets ?? ICON_SETS) {
    items.push(...iconItems(setName).filter(keep));
    const info = require(`@iconify-json/${setName}/info.json`) as { license: { spdx?: string; title: string } };
    licences[setName] = `@iconify-json/${setName}: ${info.license.spdx ?? info.license.title}`;
  }
  return { emojiPlan, items, val: valItems, licences };
}


/** Raw RGB pixels [S, S, 3] of a drawing on white. Emoji go through a 224 px PNG and a bicubic resize, the
 * path EmojiTags test images take through the model's preprocessor; icons are drawn at S directly. */
async function pixelsOf(item: CorpusItem, S: number): Promise<Buffer> {
  if (item.kind === 'emoji') {
    const png = await renderSvgPng(item.svg, 224);
    return sharp(png).flatten({ background: '#ffffff' }).resize({ width: S, height: S, fit: 'fill', kernel: 'cubic' }).removeAlpha().raw().toBuffer();
  }
  const img = new Resvg(svgDocument(item.svg), { background: 'white', fitTo: { mode: 'width', value: S }, font: { loadSystemFonts: false }, logLevel: 'off' }).render();
  const rgba = img.pixels;
  const out = Buffer.alloc(S * S * 3);
  for (let i = 0, j = 0; i < S * S; i++, j += 4) {
    out[i * 3] = rgba[j]!;
    out[i * 3 + 1] = rgba[j + 1]!;
    out[i * 3 + 2] = rgba[j + 2]!;
  }
  return out;
}

async function writeImages(items: CorpusItem[], S: number, path: string, onProgress: (n: number) => void): Promise<void> {
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

function captionRecord(it: CorpusItem, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ id: it.id, kind: it.kind, set: it.set, key: it.key, name: it.name, keywords: it.keywords, words: it.words, categories: it.categories, ...extra });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      size: { type: 'string', default: '64' },
      'icon-sets': { type: 'string' },
      'no-skins': { type: 'boolean', default: false },
    },
  });
  if (!values.out) throw new Error('usage: corpus.ts --out DIR [--size 64] [--icon-sets tabler,lucide,...] [--no-skins]');
  const S = Number(values.size);
  const t0 = performance.now();
  const plan = planCorpus({ iconSets: values['icon-sets']?.split(',').filter(Boolean), skins: !values['no-skins'] });
  mkdirSync(values.out, { recursive: true });
  const log = (msg: string) => process.stderr.write(`[corpus ${((performance.now() - t0) / 1000).toFixed(0)}s] ${msg}\n`);
  const counts: Record<string, number> = {};
  for (const it of plan.items) counts[it.set] = (counts[it.set] ?? 0) + 1;
  log(`${plan.items.length} items (${JSON.stringify(counts)}), ${plan.val.length} validation images`);

  await writeImages(plan.items, S, join(values.out, 'images.u8'), (n) => log(`rendered ${n}/${plan.items.length}`));
  await writeFileAtomic(join(values.out, 'captions.jsonl'), plan.items.map((it) => captionRecord(it)).join('\n') + '\n');
  await writeImages(plan.val, S, join(values.out, 'val.u8'), () => {});
  const split = plan.emojiPlan.split;
  await writeFileAtomic(join(values.out, 'val.jsonl'), plan.val.map((it) => captionRecord(it, { labels: plan.emojiPlan.labeling.emojiLabels.get(it.key) ?? [] })).join('\n') + '\n');
  const index = {
    size: S,
    items: plan.items.length,
    val: plan.val.length,
    perSet: counts,
    licences: plan.licences,
    emoji: { train: split.train.length, val: split.val.length, test: split.test.length },
    // the emoji whose drawings are in images.u8 (tests/pico-clip-corpus.test.ts checks them against the split)
    trainEmoji: [...new Set(plan.items.filter((it) => it.kind === 'emoji').map((it) => it.key))].sort(),
    labels: { seen: split.seen, unseen: split.unseen.map((u) => u.label), pseudoUnseen: split.pseudoUnseen },
    seconds: Math.round((performance.now() - t0) / 1000),
  };
  await writeFileAtomic(join(values.out, 'index.json'), JSON.stringify(index, null, 2) + '\n');
  log(`done: ${values.out}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
