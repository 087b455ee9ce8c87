// What EmojiTags is made of, read from installed npm packages only: the emoji list with names, groups and
// keywords (emojibase-data, emojilib, openmoji), and one drawing per emoji from each Iconify emoji set.
// Fluent emoji sets are deliberately absent: they are kept for independent evaluation.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ClipDecoderError } from '../../errors.ts';

const require = createRequire(import.meta.url);

/** Styles EmojiTags can draw with, in manifest order. The first three must draw an emoji for it to be included. */
export const EMOJI_STYLES = ['noto', 'twemoji', 'openmoji', 'noto-v1', 'emojione', 'emojione-v1', 'fxemoji', 'streamline-emojis'] as const;
export type EmojiStyleName = (typeof EMOJI_STYLES)[number];
export const CORE_STYLES: readonly EmojiStyleName[] = ['noto', 'twemoji', 'openmoji'];

export interface EmojiEntry {
  /** emojibase hexcode, e.g. "2764-FE0F". */
  hexcode: string;
  /** Codepoints of the fully-qualified emoji, lowercase: the stem of ids and file names, e.g. "2764-fe0f". */
  key: string;
  emoji: string;
  /** CLDR short name, e.g. "red heart". */
  name: string;
  group: string; // e.g. "animals-nature"
  subgroup: string; // e.g. "animal-mammal"
  /** Raw keyword sources, before normalisation. */
  cldrKeywords: string[];
  emojilibKeywords: string[];
  openmojiTags: string[];
  /** Every name the emoji is known by, for matching icon names: [CLDR/OpenMoji names, shortcodes/Unicode names]. */
  names: [string[], string[]];
}

export interface GroupInfo {
  key: string; // e.g. "animal-mammal"
  message: string; // e.g. "mammals"
}

export interface EmojiData {
  emoji: EmojiEntry[];
  groups: GroupInfo[];
  subgroups: GroupInfo[];
  versions: Record<string, string>;
}

interface EmojibaseEntry {
  label: string;
  hexcode: string;
  emoji: string;
  tags?: string[];
  group?: number;
  subgroup?: number;
}
interface EmojibaseMessages {
  groups: { key: string; message: string; order: number }[];
  subgroups: { key: string; message: string; order: number }[];
}
interface OpenmojiEntry {
  hexcode: string;
  annotation: string;
  tags: string;
  openmoji_tags: string;
  group: string;
  subgroups: string;
}

function readJson<T>(specifier: string): T {
  let path: string;
  try {
    path = require.resolve(specifier);
  } catch {
    const pkg = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
    throw new ClipDecoderError(
      'DATASET_INVALID',
      `EmojiTags needs the npm package ${pkg} (a devDependency of clip-decoder): install the dev dependencies (npm ci) and rerun`,
      pkg,
    );
  }
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

export function packageVersion(pkg: string): string {
  return readJson<{ version: string }>(`${pkg}/package.json`).version;
}

/** The SPDX licence a package declares in its package.json. */
export function packageLicense(pkg: string): string {
  return readJson<{ license?: string }>(`${pkg}/package.json`).license ?? 'see the package';
}

const stripVs = (hex: string) =>
  hex
    .toLowerCase()
    .split('-')
    .filter((p) => p !== 'fe0f')
    .join('-');

/** Lowercase alphanumerics only: "Woman’s Hat" and "womans-hat" both become "womanshat". */
export function nameKey(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '');
}

/**
 * The emoji that can be part of EmojiTags: fully-qualified base emoji with a group, leaving out flags, components
 * (skin tones, hair styles) and skin-tone variants (emojibase lists those under `skins`, never at top level).
 */
export function loadEmojiData(): EmojiData {
  const base = readJson<EmojibaseEntry[]>('emojibase-data/en/data.json');
  const messages = readJson<EmojibaseMessages>('emojibase-data/en/messages.json');
  const meta = readJson<{ groups: Record<string, string>; subgroups: Record<string, string> }>('emojibase-data/meta/groups.json');
  const unicodeNames = readJson<Record<string, string>>('emojibase-data/meta/unicode-names.json');
  const emojilib = readJson<Record<string, string[]>>('emojilib/dist/emoji-en-US.json');
  const openmoji = readJson<OpenmojiEntry[]>('openmoji/data/openmoji.json');
  const shortcodeSets = ['cldr', 'emojibase', 'emojibase-legacy', 'github', 'iamcal', 'joypixels'].map((s) =>
    readJson<Record<string, string | string[]>>(`emojibase-data/en/shortcodes/${s}.json`),
  );

  // Group numbers -> keys from emojibase's meta; keys -> readable names from its messages.
  const messageOf = new Map<string, string>();
  for (const g of [...messages.groups, ...messages.subgroups]) messageOf.set(g.key, g.message);
  const groupKey = (n: number | undefined) => (n === undefined ? undefined : meta.groups[String(n)]);
  const subgroupKey = (n: number | undefined) => (n === undefined ? undefined : meta.subgroups[String(n)]);

  const openmojiByHex = new Map<string, OpenmojiEntry>();
  for (const o of openmoji) openmojiByHex.set(stripVs(o.hexcode), o);
  const splitTags = (s: string | undefined) =>
    (s ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t.length > 0);

  const emoji: EmojiEntry[] = [];
  const usedGroups = new Set<string>();
  const usedSubgroups = new Set<string>();
  for (const e of base) {
    const group = groupKey(e.group);
    const subgroup = subgroupKey(e.subgroup);
    if (!group || !subgroup || group === 'component' || group === 'flags') continue;
    const om = openmojiByHex.get(stripVs(e.hexcode));
    const lib = emojilib[e.emoji] ?? emojilib[e.emoji.replace(/\ufe0f/g, '')] ?? emojilib[`${e.emoji}\ufe0f`] ?? [];
    const shortcodes: string[] = [];
    for (const set of shortcodeSets) {
      const sc = set[e.hexcode];
      if (sc) shortcodes.push(...(Array.isArray(sc) ? sc : [sc]));
    }
    const uname = unicodeNames[e.hexcode];
    emoji.push({
      hexcode: e.hexcode,
      key: Array.from(e.emoji, (c) => c.codePointAt(0)!.toString(16)).join('-'),
      emoji: e.emoji,
      name: e.label,
      group,
      subgroup,
      cldrKeywords: [...(e.tags ?? [])],
      emojilibKeywords: [...lib],
      openmojiTags: om ? [...splitTags(om.tags), ...splitTags(om.openmoji_tags)] : [],
      names: [
        [e.label, ...(om ? [om.annotation] : [])],
        [...shortcodes, ...(lib[0] ? [lib[0]] : []), ...(uname ? [uname] : [])],
      ],
    });
    usedGroups.add(group);
    usedSubgroups.add(subgroup);
  }
  const info = (key: string): GroupInfo => ({ key, message: messageOf.get(key) ?? key });
  const versions: Record<string, string> = {};
  for (const pkg of ['emojibase-data', 'emojilib', 'openmoji']) versions[pkg] = packageVersion(pkg);
  return {
    emoji,
    groups: [...usedGroups].sort().map(info),
    subgroups: [...usedSubgroups].sort().map(info),
    versions,
  };
}

interface IconifyIcon {
  body: string;
  left?: number;
  top?: number;
  width?: number;
  height?: number;
}
export interface IconifySet {
  icons: Record<string, IconifyIcon>;
  aliases?: Record<string, { parent: string } & Record<string, unknown>>;
  width?: number;
  height?: number;
  left?: number;
  top?: number;
}
/** An Iconify icon centred in a square view box, so every render has the same aspect. */
export function squareIcon(set: IconifySet, iconName: string): SquareSvg {
  const icon = set.icons[iconName]!;
  const left = icon.left ?? set.left ?? 0;
  const top = icon.top ?? set.top ?? 0;
  const w = icon.width ?? set.width ?? 16;
  const h = icon.height ?? set.height ?? 16;
  const side = Math.max(w, h);
  return { body: icon.body, x: left - (side - w) / 2, y: top - (side - h) / 2, side };
}

export interface IconifyInfo {
  name: string;
  author?: { name: string; url?: string };
  license: { title: string; spdx?: string; url?: string };
}

/** SVG body drawn in the square view box (x, y, side, side). */
export interface SquareSvg {
  body: string;
  x: number;
  y: number;
  side: number;
}

/** A standalone SVG document of `s`, showing the user-space box (x, y, w, h) (default: its own view box). */
export function svgDocument(
  s: SquareSvg,
  box: { x: number; y: number; w: number; h: number } = { x: s.x, y: s.y, w: s.side, h: s.side },
): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="${box.x} ${box.y} ${box.w} ${box.h}" width="${box.w}" height="${box.h}">${s.body}</svg>`;
}

/** A drawing's identity, independent of the set it came from (the leak tests compare these). */
export function svgHash(s: SquareSvg): string {
  return createHash('sha1').update(s.body).digest('hex');
}

export interface EmojiStyle {
  name: EmojiStyleName;
  /** npm package the drawings come from. */
  pkg: string;
  version: string;
  info: IconifyInfo;
  /** emoji key -> icon name in the set (after alias resolution). */
  iconOf: Map<string, string>;
  /** An icon's drawing in a square view box, ready for `svgDocument`. */
  svg(iconName: string): SquareSvg;
}

/** How an icon was matched to an emoji: by codepoints, by the emoji's name, or by a shortcode/older name. */
const LEVEL_CODEPOINT = 0;

/**
 * Loads one Iconify emoji set and maps emoji to its icons. Sets that ship `chars.json` (codepoints -> icon) are
 * mapped by codepoint only. The others are mapped by name: each icon name (and alias) is compared, as lowercase
 * alphanumerics, with the emoji's CLDR name first and its shortcodes/Unicode name second; a name that fits
 * several emoji at its best level is left out rather than guessed. Variants named "-1", "-2" (streamline) map to
 * their base name, lowest number first. An icon drawing is used for one emoji at most.
 */
export function loadEmojiStyle(name: EmojiStyleName, emoji: readonly EmojiEntry[]): EmojiStyle {
  const pkg = `@iconify-json/${name}`;
  const set = readJson<IconifySet>(`${pkg}/icons.json`);
  const info = readJson<IconifyInfo>(`${pkg}/info.json`);
  const chars = readJson<Record<string, string>>(`${pkg}/chars.json`);
  const aliases = set.aliases ?? {};
  const resolveIcon = (n: string): string | undefined => {
    for (let i = 0, cur = n; i < 8; i++) {
      if (set.icons[cur]) return cur;
      const a = aliases[cur];
      if (!a) return undefined;
      cur = a.parent;
    }
    return undefined;
  };

  // Each candidate: emoji key -> best (level, tie-break key, icon).
  type Cand = { level: number; rank: string; icon: string };
  const best = new Map<string, Cand>();
  const offer = (key: string, c: Cand) => {
    const prev = best.get(key);
    if (!prev || c.level < prev.level || (c.level === prev.level && c.rank < prev.rank)) best.set(key, c);
  };

  if (Object.keys(chars).length > 0) {
    for (const e of emoji) {
      const icon = chars[stripVs(e.hexcode)];
      const resolved = icon ? resolveIcon(icon) : undefined;
      if (resolved) offer(e.key, { level: LEVEL_CODEPOINT, rank: '', icon: resolved });
    }
  } else {
    // name key -> emoji keys, per level (1 = CLDR/OpenMoji name, 2 = shortcodes and Unicode names)
    const byName: Map<string, Set<string>>[] = [new Map(), new Map()];
    for (const e of emoji) {
      e.names.forEach((names, level) => {
        for (const n of names) {
          const k = nameKey(n);
          if (k.length === 0) continue;
          let s = byName[level]!.get(k);
          if (!s) byName[level]!.set(k, (s = new Set()));
          s.add(e.key);
        }
      });
    }
    const iconNames = [...Object.keys(set.icons), ...Object.keys(aliases)];
    for (const iconName of iconNames) {
      const resolved = resolveIcon(iconName);
      if (!resolved) continue;
      const isAlias = set.icons[iconName] ? 0 : 1;
      const variant = /^(.+)-(\d+)$/.exec(iconName);
      const tries: [string, number][] = [[iconName, 0]];
      if (variant) tries.push([variant[1]!, Number(variant[2])]);
      for (const [candidate, variantNo] of tries) {
        const k = nameKey(candidate);
        let matched = false;
        for (let level = 0; level < byName.length && !matched; level++) {
          const hits = byName[level]!.get(k);
          if (!hits) continue;
          matched = true;
          if (hits.size !== 1) break; // ambiguous at its best level: do not guess
          const [key] = hits;
          const rank = `${isAlias}:${String(variantNo).padStart(4, '0')}:${iconName}`;
          offer(key!, { level: level + 1, rank, icon: resolved });
        }
        if (matched) break;
      }
    }
  }

  // One drawing, one emoji: when two emoji got the same icon, the better match keeps it.
  const owner = new Map<string, { key: string; c: Cand }>();
  for (const [key, c] of best) {
    const prev = owner.get(c.icon);
    if (!prev || c.level < prev.c.level || (c.level === prev.c.level && key < prev.key)) owner.set(c.icon, { key, c });
  }
  const iconOf = new Map<string, string>();
  for (const e of emoji) {
    const c = best.get(e.key);
    if (c && owner.get(c.icon)?.key === e.key) iconOf.set(e.key, c.icon);
  }

  const svg = (iconName: string): SquareSvg => {
    if (!set.icons[iconName]) throw new ClipDecoderError('DATASET_INVALID', `${pkg} has no icon "${iconName}"`, pkg);
    return squareIcon(set, iconName);
  };

  return { name, pkg, version: packageVersion(pkg), info, iconOf, svg };
}
