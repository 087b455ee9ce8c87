// Plain-CLIP quality of a model folder, through the same loader and ONNX sessions users run. The default benchmark
// is EmojiScenes (tools/pico-clip/scenes-eval.ts: scenes, style transfer, single emoji, names, localisation):
//   node --import tsx tools/pico-clip/evaluate.ts [--model models/pico-clip] [--data /work/emojiscenes] [--json out.json]
// `--benchmark emojitags` is the v1-era report on EmojiTags:
//   name retrieval  each image ranks the CLDR names of every emoji in its part (a name template); R@1, R@5
//   zero-shot tags  score = cosine(image embedding, prompt embedding of the label); ZSL (unseen labels only) and
//                   GZSL (seen + unseen) mAP, F1@3, F1@5, by src/eval's protocol (all images kept, strict top-K)
// Templates are chosen on the VALIDATION emoji (the split's pseudo-unseen labels stand in for the unseen ones),
// never on test; the chosen ones then score the TEST emoji.
//   node --import tsx tools/pico-clip/evaluate.ts --benchmark emojitags [--model models/pico-clip] [--data /work/emojitags]
// --data: a built EmojiTags folder (manifest.jsonl, split.json, images/) to read; without it, or when it is
// missing, the test and validation images are rendered here exactly as EmojiTags renders them (224 px PNG).
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ClipModel } from '../../src/clip/model.ts';
import { embedLabels, l2normalizeRows } from '../../src/clip/prompts.ts';
import { planEmojiTags } from '../../src/data/emoji/build.ts';
import type { EmojiTagsPlan } from '../../src/data/emoji/build.ts';
import { renderSvgPng } from '../../src/data/emoji/render.ts';
import { evaluateProtocol } from '../../src/eval/protocol.ts';
import type { ProtocolMetrics } from '../../src/eval/protocol.ts';
import { writeFileAtomic } from '../../src/util/fs.ts';

/** Candidate templates (the CLIP paper's habit: pick on held-out data). */
export const NAME_TEMPLATES = ['{label}', 'an emoji of {label}', 'a photo of {label}', 'an emoji of a {label}'];
export const TAG_TEMPLATES = [
  'a photo of {label}',
  'a photo of a {label}',
  'an emoji of {label}',
  'an emoji of a {label}',
  '{label}',
  'a drawing of {label}',
  'an icon of {label}',
];
/** Special candidate: the average of every tag template (CLIP's prompt ensembling). */
export const ENSEMBLE = 'ensemble';

export interface PartImages {
  ids: string[];
  /** CLDR name of each image's emoji. */
  names: string[];
  labels: string[][];
  sources: (string | Uint8Array)[];
}

export async function partImages(plan: EmojiTagsPlan, part: 'val' | 'test', dataDir?: string): Promise<PartImages> {
  const ids = plan.datasetSplit[part];
  const byId = new Map(plan.items.map((it) => [it.id, it]));
  const items = ids.map((id) => byId.get(id)!);
  let sources: (string | Uint8Array)[];
  if (dataDir && existsSync(join(dataDir, 'split.json')) && existsSync(join(dataDir, 'manifest.jsonl'))) {
    const split = JSON.parse(readFileSync(join(dataDir, 'split.json'), 'utf8')) as Record<string, string[]>;
    const same = split[part]?.length === ids.length && split[part]!.every((id, i) => id === ids[i]);
    if (!same)
      throw new Error(`${dataDir}/split.json: its ${part} part is not the default EmojiTags split; rebuild it or leave out --data`);
    sources = items.map((it) => resolve(dataDir, it.file));
  } else {
    const styleOf = new Map(plan.styles.map((s) => [s.name as string, s]));
    const entryOf = new Map(plan.pool.map((e) => [e.hexcode, e]));
    sources = [];
    for (const it of items) {
      const style = styleOf.get(String(it.meta!.style))!;
      const entry = entryOf.get(String(it.meta!.hexcode))!;
      sources.push(await renderSvgPng(style.svg(style.iconOf.get(entry.key)!), plan.options.size));
    }
  }
  return { ids, names: items.map((it) => String(it.meta!.name)), labels: items.map((it) => it.labels), sources };
}

/** L2-normalised image embeddings [N, E]. */
export async function imageEmbeddings(model: ClipModel, sources: (string | Uint8Array)[]): Promise<Float32Array> {
  const E = model.embedDim;
  const out = new Float32Array(sources.length * E);
  for await (const r of model.encodeImages(sources, { batchSize: 64 })) {
    if (r.error) throw r.error;
    out.set(r.imageEmbed, r.index * E);
  }
  return l2normalizeRows(out, E);
}

/** scores [N, M] = images [N, E] · texts [M, E]ᵀ (both normalised: cosines). */
export function cosines(images: Float32Array, texts: Float32Array, E: number): Float32Array {
  const N = images.length / E;
  const M = texts.length / E;
  const s = new Float32Array(N * M);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < M; j++) {
      let d = 0;
      for (let k = 0; k < E; k++) d += images[i * E + k]! * texts[j * E + k]!;
      s[i * M + j] = d;
    }
  }
  return s;
}

export interface NameRetrieval {
  r1: number;
  r5: number;
  candidates: number;
  chanceR1: number;
  chanceR5: number;
}

/** Image → name retrieval: the rank of each image's own name among all `names` (ties count against it). */
export function nameRetrieval(scores: Float32Array, imageNames: readonly string[], names: readonly string[]): NameRetrieval {
  const M = names.length;
  const col = new Map(names.map((n, j) => [n, j]));
  let r1 = 0;
  let r5 = 0;
  imageNames.forEach((n, i) => {
    const own = scores[i * M + col.get(n)!]!;
    let above = 0;
    for (let j = 0; j < M; j++) if (j !== col.get(n) && scores[i * M + j]! >= own) above++;
    if (above < 1) r1++;
    if (above < 5) r5++;
  });
  const N = imageNames.length;
  return { r1: (100 * r1) / N, r5: (100 * r5) / N, candidates: M, chanceR1: 100 / M, chanceR5: (100 * Math.min(5, M)) / M };
}

export async function textEmbeddings(model: ClipModel, labels: readonly string[], template: string): Promise<Float32Array> {
  return embedLabels(model, labels, { templates: template === ENSEMBLE ? TAG_TEMPLATES : [template] });
}

export interface TagScores {
  zsl: ProtocolMetrics;
  gzsl: ProtocolMetrics;
  /** Mean over labels (with positives) of the positive rate: the mAP of a random ranking, in expectation. */
  chanceZsl: number;
  chanceGzsl: number;
}

function targetsOf(labels: readonly string[][], columns: readonly string[]): Uint8Array {
  const L = columns.length;
  const col = new Map(columns.map((l, j) => [l, j]));
  const t = new Uint8Array(labels.length * L);
  labels.forEach((ls, i) => {
    for (const l of ls) {
      const j = col.get(l);
      if (j !== undefined) t[i * L + j] = 1;
    }
  });
  return t;
}

function chance(targets: Uint8Array, n: number, L: number, cols: number[]): number {
  let sum = 0;
  let k = 0;
  for (const j of cols) {
    let p = 0;
    for (let i = 0; i < n; i++) p += targets[i * L + j]!;
    if (p > 0) {
      sum += p / n;
      k++;
    }
  }
  return k ? sum / k : 0;
}

export function tagScores(
  scores: Float32Array,
  labels: readonly string[][],
  seen: readonly string[],
  unseen: readonly string[],
): TagScores {
  const columns = [...seen, ...unseen];
  const n = labels.length;
  const targets = targetsOf(labels, columns);
  const r = evaluateProtocol({ scores, labels: columns, targets, images: n }, seen, unseen);
  const all = columns.map((_, j) => j);
  return {
    zsl: r.zsl!,
    gzsl: r.gzsl,
    chanceZsl: chance(targets, n, columns.length, all.slice(seen.length)),
    chanceGzsl: chance(targets, n, columns.length, all),
  };
}

const pct = (x: number) => Math.round(x * 1000) / 10;

export interface EvalResult {
  model: string;
  templates: { name: string; tags: string };
  selection: { name: Record<string, number>; tags: Record<string, number> };
  test: {
    images: number;
    emoji: number;
    names: NameRetrieval;
    zsl: { mAP: number; f1at3: number; f1at5: number; chanceMAP: number; labels: number };
    gzsl: { mAP: number; f1at3: number; f1at5: number; chanceMAP: number; labels: number };
  };
  seconds: number;
}

export async function evaluateModel(modelDir: string, dataDir?: string, log: (s: string) => void = () => {}): Promise<EvalResult> {
  const t0 = performance.now();
  const plan = planEmojiTags();
  const split = plan.datasetSplit;
  const model = await ClipModel.load(modelDir, { threads: 2 });
  const E = model.embedDim;
  try {
    // --- selection on validation emoji: names among validation names; tags with pseudo-unseen as unseen
    const val = await partImages(plan, 'val', dataDir);
    const valImg = await imageEmbeddings(model, val.sources);
    const valNames = [...new Set(val.names)].sort();
    const nameSel: Record<string, number> = {};
    for (const t of NAME_TEMPLATES)
      nameSel[t] = nameRetrieval(cosines(valImg, await textEmbeddings(model, valNames, t), E), val.names, valNames).r1;
    const pseudo = new Set(split.pseudoUnseen);
    const valSeen = split.seen.filter((l) => !pseudo.has(l));
    const tagSel: Record<string, number> = {};
    for (const t of [...TAG_TEMPLATES, ENSEMBLE]) {
      const cols = [...valSeen, ...split.pseudoUnseen];
      tagSel[t] = pct(tagScores(cosines(valImg, await textEmbeddings(model, cols, t), E), val.labels, valSeen, split.pseudoUnseen).zsl.mAP);
    }
    const best = (sel: Record<string, number>) => Object.entries(sel).reduce((a, b) => (b[1] > a[1] ? b : a))[0];
    const nameTemplate = best(nameSel);
    const tagTemplate = best(tagSel);
    log(`validation (${val.ids.length} images): name R@1 by template ${JSON.stringify(nameSel)}`);
    log(`validation: pseudo-unseen mAP by template ${JSON.stringify(tagSel)}`);
    log(`chosen: names "${nameTemplate}", tags "${tagTemplate}"`);

    // --- test
    const test = await partImages(plan, 'test', dataDir);
    const img = await imageEmbeddings(model, test.sources);
    const names = [...new Set(test.names)].sort();
    const nr = nameRetrieval(cosines(img, await textEmbeddings(model, names, nameTemplate), E), test.names, names);
    const cols = [...split.seen, ...split.unseen];
    const ts = tagScores(cosines(img, await textEmbeddings(model, cols, tagTemplate), E), test.labels, split.seen, split.unseen);
    const f1 = (m: ProtocolMetrics, k: number) => pct(m.topK.find((t) => t.k === k)!.f1);
    return {
      model: modelDir,
      templates: { name: nameTemplate, tags: tagTemplate },
      selection: { name: nameSel, tags: tagSel },
      test: {
        images: test.ids.length,
        emoji: names.length,
        names: { ...nr, r1: Math.round(nr.r1 * 10) / 10, r5: Math.round(nr.r5 * 10) / 10 },
        zsl: { mAP: pct(ts.zsl.mAP), f1at3: f1(ts.zsl, 3), f1at5: f1(ts.zsl, 5), chanceMAP: pct(ts.chanceZsl), labels: ts.zsl.labels },
        gzsl: {
          mAP: pct(ts.gzsl.mAP),
          f1at3: f1(ts.gzsl, 3),
          f1at5: f1(ts.gzsl, 5),
          chanceMAP: pct(ts.chanceGzsl),
          labels: ts.gzsl.labels,
        },
      },
      seconds: Math.round((performance.now() - t0) / 1000),
    };
  } finally {
    await model.dispose();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'models/pico-clip' },
      benchmark: { type: 'string', default: 'emojiscenes' },
      data: { type: 'string' },
      json: { type: 'string' },
      'probe-scenes': { type: 'string', default: '1500' },
    },
  });
  const log = (s: string) => process.stderr.write(`${s}\n`);
  if (values.benchmark === 'emojiscenes') {
    const { evaluateScenes, formatScenes } = await import('./scenes-eval.ts');
    const probeScenes = Number(values['probe-scenes']);
    if (!Number.isInteger(probeScenes) || probeScenes < 1)
      throw new Error(`--probe-scenes must be a positive integer, got ${values['probe-scenes']}`);
    const r = await evaluateScenes(values.model!, values.data ?? '/work/emojiscenes', log, { probeScenes });
    for (const line of formatScenes(r)) console.log(line);
    if (values.json) await writeFileAtomic(values.json, `${JSON.stringify(r, null, 2)}\n`);
    return;
  }
  if (values.benchmark !== 'emojitags') throw new Error(`--benchmark must be emojiscenes or emojitags, got ${values.benchmark}`);
  const r = await evaluateModel(values.model!, values.data ?? '/work/emojitags', log);
  const t = r.test;
  console.log(`EmojiTags TEST (${t.images} images of ${t.emoji} emoji never seen in pretraining), model ${r.model}`);
  console.log(
    `  name retrieval ("${r.templates.name}", ${t.names.candidates} names): R@1 ${t.names.r1.toFixed(1)} % (chance ${t.names.chanceR1.toFixed(2)}), R@5 ${t.names.r5.toFixed(1)} % (chance ${t.names.chanceR5.toFixed(2)})`,
  );
  console.log(
    `  ZSL  (${t.zsl.labels} unseen labels, "${r.templates.tags}"): mAP ${t.zsl.mAP.toFixed(1)} (chance ${t.zsl.chanceMAP.toFixed(1)}), F1@3 ${t.zsl.f1at3.toFixed(1)}, F1@5 ${t.zsl.f1at5.toFixed(1)}`,
  );
  console.log(
    `  GZSL (${t.gzsl.labels} labels): mAP ${t.gzsl.mAP.toFixed(1)} (chance ${t.gzsl.chanceMAP.toFixed(1)}), F1@3 ${t.gzsl.f1at3.toFixed(1)}, F1@5 ${t.gzsl.f1at5.toFixed(1)}`,
  );
  if (values.json) await writeFileAtomic(values.json, `${JSON.stringify(r, null, 2)}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
