// Keyword normalisation for label vocabularies: lowercase alphabetic words of at least three letters, English
// stop-words out, plural nouns made singular. Emoji keywords ("grinning_face", "Cats", "piñata") and tag lists
// all go through here, so one word always becomes one label.

const STOP_WORDS = new Set(
  (
    'a about above after again against all also am an and any are as at be because been before being below ' +
    'between both but by can could did do does doing down during each either else ever every few for from ' +
    'further had has have having he her here hers herself him himself his how however into its itself just ' +
    'let may me might more most much must my myself neither nor not now off once only onto or other our ours ' +
    'ourselves out over own per same shall she should since some such than that the their theirs them ' +
    'themselves then there these they this those through thus too under until upon very via was were what ' +
    'when where whether which while who whom whose why will with within without would yet you your yours ' +
    'yourself yourselves its etc one two three another many lot lots get got getting like'
  ).split(/\s+/),
);

/** Plurals that are not formed by the regular rules (or that the rules would get wrong). */
const IRREGULAR: Record<string, string> = {
  men: 'man',
  women: 'woman',
  children: 'child',
  feet: 'foot',
  teeth: 'tooth',
  geese: 'goose',
  mice: 'mouse',
  oxen: 'ox',
  leaves: 'leaf',
  knives: 'knife',
  wives: 'wife',
  lives: 'life',
  wolves: 'wolf',
  calves: 'calf',
  halves: 'half',
  shelves: 'shelf',
  thieves: 'thief',
  loaves: 'loaf',
  elves: 'elf',
  scarves: 'scarf',
  hooves: 'hoof',
  buses: 'bus',
  lenses: 'lens',
  gases: 'gas',
  irises: 'iris',
  viruses: 'virus',
  circuses: 'circus',
  walruses: 'walrus',
  octopuses: 'octopus',
  cactuses: 'cactus',
  cacti: 'cactus',
  fungi: 'fungus',
  bonuses: 'bonus',
  campuses: 'campus',
  atlases: 'atlas',
  canvases: 'canvas',
  crises: 'crisis',
  analyses: 'analysis',
  oases: 'oasis',
  axes: 'axe',
  dice: 'dice',
  mongooses: 'mongoose',
};

/** Words that end in "s" but are not plurals, or whose plural form is the usual tag. */
const INVARIANT = new Set(
  (
    'news series species chess glasses sunglasses eyeglasses goggles clothes pants jeans shorts scissors ' +
    'trousers tongs pliers binoculars mathematics physics gymnastics athletics politics economics electronics ' +
    'billiards darts christmas texas always perhaps alias bias yes gas bus plus minus atlas canvas lens iris ' +
    'kudos diabetes rabies measles mumps herpes thanks congratulations overalls pajamas pyjamas headquarters ' +
    'means ethics aerobics olympics xmas'
  ).split(/\s+/),
);

/** Nouns that end in "ie": "cookies" is "cookie", not "cooky". */
const IE_NOUNS = new Set(
  (
    'movie cookie zombie pie tie brownie selfie genie smoothie hoodie rookie calorie veggie hippie goalie lie ' +
    'die boogie birdie collie pixie prairie freebie newbie yuppie magpie sweetie cutie auntie doggie kiddie ' +
    'beanie bootie specie eyrie rotisserie lingerie menagerie coterie reverie'
  ).split(/\s+/),
);

/** Nouns in "o" whose plural takes "es". */
const O_ES_NOUNS = new Set('tomato potato hero mosquito volcano mango echo domino torpedo buffalo tornado veto'.split(' '));

/** Nouns in "che" (their plural "-ches" must not lose the "e"). */
const CHE_NOUNS = new Set(
  'ache headache earache toothache stomachache moustache mustache niche cache quiche avalanche cliche psyche panache'.split(' '),
);

/** The singular of an English word (lowercase in, lowercase out); non-plurals are returned unchanged. */
export function singularize(word: string): string {
  if (word.length <= 3 || INVARIANT.has(word)) return word;
  const irregular = IRREGULAR[word];
  if (irregular) return irregular;
  if (!word.endsWith('s')) return word;
  if (word.endsWith('ss') || word.endsWith('us') || word.endsWith('is')) return word;
  if (word.endsWith('ies')) {
    const stem = word.slice(0, -1); // "cookies" -> "cookie"
    if (IE_NOUNS.has(stem) || word.length <= 4) return stem;
    return `${word.slice(0, -3)}y`; // "berries" -> "berry"
  }
  if (word.endsWith('oes')) {
    const stem = word.slice(0, -2); // "tomatoes" -> "tomato"
    return O_ES_NOUNS.has(stem) ? stem : word.slice(0, -1); // "shoes" -> "shoe"
  }
  if (word.endsWith('ches') || word.endsWith('shes') || word.endsWith('xes') || word.endsWith('zzes') || word.endsWith('sses')) {
    const withE = word.slice(0, -1);
    return CHE_NOUNS.has(withE) ? withE : word.slice(0, -2); // "matches" -> "match", "headaches" -> "headache"
  }
  return word.slice(0, -1);
}

export function isStopWord(word: string): boolean {
  return STOP_WORDS.has(word);
}

/**
 * Splits free text (a keyword, a name, a tag) into normalised label words: accents stripped, lowercase, runs of
 * letters only, ≥ 3 letters, stop-words out, singular. "Grinning_Face" -> ["grinning", "face"]; "piñatas" ->
 * ["pinata"]; "1st place" -> ["place"].
 */
export function labelWords(text: string): string[] {
  const plain = text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase();
  const out: string[] = [];
  for (const token of plain.split(/[^a-z]+/)) {
    if (token.length < 3 || STOP_WORDS.has(token)) continue;
    const word = singularize(token);
    if (word.length < 3 || STOP_WORDS.has(word)) continue;
    out.push(word);
  }
  return out;
}

/** One word normalised as a label, or null when normalisation leaves nothing (or more than one word). */
export function normalizeLabelWord(text: string): string | null {
  const words = labelWords(text);
  return words.length === 1 ? words[0]! : null;
}
