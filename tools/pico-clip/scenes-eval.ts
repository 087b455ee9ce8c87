// Plain-CLIP quality of a model folder on an EmojiScenes build, through the same loader and ONNX sessions users
// run (tools/pico-clip/evaluate.ts is the command):
//   tags        score = cosine(image embedding, prompt embedding of the label): ZSL (unseen labels) and GZSL
//               (seen + unseen) mAP, F1@3, F1@5 by src/eval's protocol, on test scenes (training styles), the
//               style-transfer scenes (Firefox OS only) and the single-emoji test images of both kinds
//   names       each single test emoji ranks the CLDR names of all test emoji: R@1, R@5
//   where       per member of a test scene, the patch most similar to its name's text embedding (the model's
//               own projection, `patch_embeds`, when the graph has it; and a ridge probe from patch tokens to
//               text embeddings fitted on P scenes) lies inside its box: the rate, against a random patch's
// Templates are chosen on the VALIDATION part only (names on validation singles; tags on validation scenes with
// the split's pseudo-unseen labels as unseen), never on test.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClipModel } from '../../src/clip/model.ts';
import { ClipDecoderError } from '../../src/errors.ts';
import type { ProtocolMetrics } from '../../src/eval/protocol.ts';
import { ENSEMBLE, NAME_TEMPLATES, TAG_TEMPLATES, cosines, imageEmbeddings, nameRetrieval, tagScores, textEmbeddings } from './evaluate.ts';
import type { NameRetrieval } from './evaluate.ts';

interface Member {
  name: string;
  /** [x, y, w, h] in pixels of the build. */
  box: number[];
}
interface Img {
  id: string;
  file: string;
  labels: string[];
  subset: string;
  name?: string;
  members?: Member[];
}

export interface ScenesData {
  dir: string;
  size: number;
  seen: string[];
  unseen: string[];
  pseudoUnseen: string[];
  valScenes: Img[];
  testScenes: Img[];
  styleScenes: Img[];
  valSingles: Img[];
  testSingles: Img[];
  styleSingles: Img[];
  /** P scenes with member boxes (the probe's training data). */
  pretrain: Img[];
}

const readJsonl = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** Reads a built EmojiScenes folder (`clip-decoder data scenes --out DIR`); an unbuilt one is named in the error. */
export function readEmojiScenes(dir: string): ScenesData {
  for (const f of ['build.json', 'manifest.jsonl', 'split.json', 'single/manifest.jsonl', 'single/split.json', 'pretrain-scenes.jsonl']) {
    if (!existsSync(join(dir, f)))
      throw new ClipDecoderError(
        'INPUT_INVALID',
        `${join(dir, f)}: missing; build the benchmark with clip-decoder data scenes --out ${dir}`,
        '--data',
      );
  }
  const build = JSON.parse(readFileSync(join(dir, 'build.json'), 'utf8')) as { options: { size: number } };
  const split = JSON.parse(readFileSync(join(dir, 'split.json'), 'utf8')) as Record<string, string[]>;
  const sSplit = JSON.parse(readFileSync(join(dir, 'single/split.json'), 'utf8')) as Record<string, string[]>;
  const scenes = new Map(
    readJsonl(join(dir, 'manifest.jsonl')).map((r) => [r.id as string, { ...(r as unknown as Img), file: join(dir, r.file as string) }]),
  );
  const singles = new Map(
    readJsonl(join(dir, 'single/manifest.jsonl')).map((r) => [
      r.id as string,
      { ...(r as unknown as Img), file: join(dir, 'single', r.file as string) },
    ]),
  );
  const pick = (m: Map<string, Img>, ids: string[]) => ids.map((id) => m.get(id)!);
  const test = pick(scenes, split.test!);
  const stest = pick(singles, sSplit.test!);
  const pretrain = readJsonl(join(dir, 'pretrain-scenes.jsonl')).map((r) => ({
    id: r.id as string,
    file: join(dir, r.file as string),
    labels: r.words as string[],
    subset: 'pretrain',
    members: r.members as Member[],
  }));
  return {
    dir,
    size: build.options.size,
    seen: split.seen!,
    unseen: split.unseen!,
    pseudoUnseen: split.pseudoUnseen!,
    valScenes: pick(scenes, split.val!),
    testScenes: test.filter((s) => s.subset === 'scene'),
    styleScenes: test.filter((s) => s.subset === 'style-transfer'),
    valSingles: pick(singles, sSplit.val!),
    testSingles: stest.filter((s) => s.subset !== 'style-transfer'),
    styleSingles: stest.filter((s) => s.subset === 'style-transfer'),
    pretrain,
  };
}

const pct = (x: number) => Math.round(x * 1000) / 10;
const r1 = (x: number) => Math.round(x * 10) / 10;

export interface TagRow {
  images: number;
  zsl: { mAP: number; f1at3: number; f1at5: number; chanceMAP: number; labels: number };
  gzsl: { mAP: number; f1at3: number; f1at5: number; chanceMAP: number; labels: number };
}

function tagRow(scores: Float32Array, imgs: Img[], seen: string[], unseen: string[]): TagRow {
  const ts = tagScores(
    scores,
    imgs.map((i) => i.labels),
    seen,
    unseen,
  );
  const f1 = (m: ProtocolMetrics, k: number) => pct(m.topK.find((t) => t.k === k)!.f1);
  return {
    images: imgs.length,
    zsl: { mAP: pct(ts.zsl.mAP), f1at3: f1(ts.zsl, 3), f1at5: f1(ts.zsl, 5), chanceMAP: pct(ts.chanceZsl), labels: ts.zsl.labels },
    gzsl: { mAP: pct(ts.gzsl.mAP), f1at3: f1(ts.gzsl, 3), f1at5: f1(ts.gzsl, 5), chanceMAP: pct(ts.chanceGzsl), labels: ts.gzsl.labels },
  };
}

/** Patch tokens [N, T, D] of images (CLS dropped) and their L2-normalised image embeddings [N, E]: one pass. */
async function patchTokens(
  model: ClipModel,
  files: string[],
): Promise<{ tokens: Float32Array; T: number; D: number; embeds: Float32Array }> {
  let out: Float32Array | undefined;
  const E = model.embedDim;
  const embeds = new Float32Array(files.length * E);
  for await (const r of model.encodeImages(files, { batchSize: 64 })) {
    if (r.error) throw r.error;
    out ??= new Float32Array(files.length * r.tokens.length);
    out.set(r.tokens, r.index * r.tokens.length);
    embeds.set(r.imageEmbed, r.index * E);
  }
  for (let i = 0; i < files.length; i++) {
    const v = embeds.subarray(i * E, (i + 1) * E);
    const n = Math.hypot(...v) || 1;
    for (let k = 0; k < E; k++) v[k]! /= n;
  }
  return { tokens: out!, T: model.numTokens, D: model.tokenDim, embeds };
}

/** Patch centres of a G × G grid inside a box [x, y, w, h] (pixels of a side-S image), as a [G*G] mask. */
export function boxMask(box: readonly number[], G: number, S: number): Uint8Array {
  const m = new Uint8Array(G * G);
  for (let gy = 0; gy < G; gy++) {
    for (let gx = 0; gx < G; gx++) {
      const cx = ((gx + 0.5) / G) * S;
      const cy = ((gy + 0.5) / G) * S;
      m[gy * G + gx] = cx >= box[0]! && cx <= box[0]! + box[2]! && cy >= box[1]! && cy <= box[1]! + box[3]! ? 1 : 0;
    }
  }
  return m;
}

export interface Localisation {
  members: number;
  /** % of members whose best patch lies in their box. */
  rate: number;
  /** % a uniformly random patch would reach (mean share of patches inside the box). */
  random: number;
  ratio: number;
}

/**
 * For each member of each scene: the patch whose (projected) token is most similar to the member's name
 * embedding. `project(tokens [T, D]) → [T, E]`.
 */
function localise(
  imgs: Img[],
  tok: { tokens: Float32Array; T: number; D: number },
  nameEmb: Map<string, Float32Array>,
  S: number,
  project: (t: Float32Array) => Float32Array,
  E: number,
): Localisation {
  const G = Math.round(Math.sqrt(tok.T));
  let hit = 0;
  let rand = 0;
  let n = 0;
  imgs.forEach((img, i) => {
    const p = project(tok.tokens.subarray(i * tok.T * tok.D, (i + 1) * tok.T * tok.D)); // [T, E]
    for (const m of img.members ?? []) {
      const q = nameEmb.get(m.name)!;
      let best = -1;
      let bestS = -Infinity;
      for (let t = 0; t < tok.T; t++) {
        let s = 0;
        let nn = 0;
        for (let k = 0; k < E; k++) {
          s += p[t * E + k]! * q[k]!;
          nn += p[t * E + k]! ** 2;
        }
        s /= Math.sqrt(nn) || 1;
        if (s > bestS) {
          bestS = s;
          best = t;
        }
      }
      const mask = boxMask(m.box, G, S);
      hit += mask[best]!;
      rand += mask.reduce((a, b) => a + b, 0) / mask.length;
      n++;
    }
  });
  const rate = (100 * hit) / n;
  const random = (100 * rand) / n;
  return { members: n, rate: r1(rate), random: r1(random), ratio: Math.round((rate / random) * 100) / 100 };
}

/** Solves (A + λI) X = B for symmetric positive definite A [n, n], B [n, m] (Cholesky). */
export function ridgeSolve(A: Float64Array, B: Float64Array, n: number, m: number, lambda: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * n + j]! + (i === j ? lambda : 0);
      for (let k = 0; k < j; k++) s -= L[i * n + k]! * L[j * n + k]!;
      L[i * n + j] = i === j ? Math.sqrt(Math.max(s, 1e-12)) : s / L[j * n + j]!;
    }
  }
  const X = new Float64Array(n * m);
  for (let c = 0; c < m; c++) {
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = B[i * m + c]!;
      for (let k = 0; k < i; k++) s -= L[i * n + k]! * y[k]!;
      y[i] = s / L[i * n + i]!;
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = y[i]!;
      for (let k = i + 1; k < n; k++) s -= L[k * n + i]! * X[k * m + c]!;
      X[i * m + c] = s / L[i * n + i]!;
    }
  }
  return X;
}

/**
 * A linear probe patch token [D] (+1 bias) → text space [E], least squares with ridge λ (relative to the mean
 * diagonal): every patch whose centre lies in exactly one member's box is a sample, its target the member's
 * normalised name embedding. Fitted on P scenes only (CLIP's pretraining data; no B image).
 */
function fitProbe(
  imgs: Img[],
  tok: { tokens: Float32Array; T: number; D: number },
  nameEmb: Map<string, Float32Array>,
  S: number,
  E: number,
  lambda = 0.1,
): (t: Float32Array) => Float32Array {
  const { T, D } = tok;
  const G = Math.round(Math.sqrt(T));
  const n = D + 1;
  const A = new Float64Array(n * n);
  const B = new Float64Array(n * E);
  const x = new Float64Array(n);
  imgs.forEach((img, i) => {
    const masks = (img.members ?? []).map((m) => boxMask(m.box, G, S));
    for (let t = 0; t < T; t++) {
      const owners = masks.flatMap((mk, j) => (mk[t] ? [j] : []));
      if (owners.length !== 1) continue;
      const q = nameEmb.get(img.members![owners[0]!]!.name)!;
      for (let k = 0; k < D; k++) x[k] = tok.tokens[(i * T + t) * D + k]!;
      x[D] = 1;
      for (let a = 0; a < n; a++) {
        const xa = x[a]!;
        for (let b = 0; b <= a; b++) A[a * n + b]! += xa * x[b]!;
        for (let e = 0; e < E; e++) B[a * E + e]! += xa * q[e]!;
      }
    }
  });
  for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) A[a * n + b] = A[b * n + a]!;
  let diag = 0;
  for (let a = 0; a < n; a++) diag += A[a * n + a]!;
  const W = ridgeSolve(A, B, n, E, (lambda * diag) / n);
  return (tokens: Float32Array) => {
    const rows = tokens.length / D;
    const out = new Float32Array(rows * E);
    for (let r = 0; r < rows; r++) {
      for (let e = 0; e < E; e++) {
        let s = W[D * E + e]!;
        for (let k = 0; k < D; k++) s += tokens[r * D + k]! * W[k * E + e]!;
        out[r * E + e] = s;
      }
    }
    return out;
  };
}

export interface ScenesEvalResult {
  model: string;
  data: string;
  templates: { name: string; tags: string };
  selection: { name: Record<string, number>; tags: Record<string, number> };
  test: {
    scenes: TagRow;
    styleScenes: TagRow;
    singles: TagRow & { names: NameRetrieval };
    styleSingles: TagRow & { names: NameRetrieval };
  };
  localisation: {
    grid: number;
    ownProjection?: Localisation;
    probe: Localisation;
    styleOwnProjection?: Localisation;
    styleProbe: Localisation;
    probeScenes: number;
  };
  seconds: number;
}

export async function evaluateScenes(
  modelDir: string,
  dataDir: string,
  log: (s: string) => void = () => {},
  options: { probeScenes?: number } = {},
): Promise<ScenesEvalResult> {
  const t0 = performance.now();
  const d = readEmojiScenes(dataDir);
  const model = await ClipModel.load(modelDir, { threads: 2 });
  const E = model.embedDim;
  try {
    // --- selection on the validation part only
    const valSingleImg = await imageEmbeddings(
      model,
      d.valSingles.map((i) => i.file),
    );
    const valNames = [...new Set(d.valSingles.map((i) => i.name!))].sort();
    const nameSel: Record<string, number> = {};
    for (const t of NAME_TEMPLATES)
      nameSel[t] = r1(
        nameRetrieval(
          cosines(valSingleImg, await textEmbeddings(model, valNames, t), E),
          d.valSingles.map((i) => i.name!),
          valNames,
        ).r1,
      );
    const pseudo = new Set(d.pseudoUnseen);
    const valSeen = d.seen.filter((l) => !pseudo.has(l));
    const valSceneImg = await imageEmbeddings(
      model,
      d.valScenes.map((i) => i.file),
    );
    const tagSel: Record<string, number> = {};
    for (const t of [...TAG_TEMPLATES, ENSEMBLE]) {
      const cols = [...valSeen, ...d.pseudoUnseen];
      tagSel[t] = pct(
        tagScores(
          cosines(valSceneImg, await textEmbeddings(model, cols, t), E),
          d.valScenes.map((i) => i.labels),
          valSeen,
          d.pseudoUnseen,
        ).zsl.mAP,
      );
    }
    const best = (sel: Record<string, number>) => Object.entries(sel).reduce((a, b) => (b[1] > a[1] ? b : a))[0];
    const nameTemplate = best(nameSel);
    const tagTemplate = best(tagSel);
    log(`validation: name R@1 by template ${JSON.stringify(nameSel)}`);
    log(`validation scenes: pseudo-unseen mAP by template ${JSON.stringify(tagSel)}`);
    log(`chosen: names "${nameTemplate}", tags "${tagTemplate}"`);

    // --- test
    const cols = [...d.seen, ...d.unseen];
    const labelEmb = await textEmbeddings(model, cols, tagTemplate);
    const rowOf = async (imgs: Img[], given?: Float32Array) => {
      const img =
        given ??
        (await imageEmbeddings(
          model,
          imgs.map((i) => i.file),
        ));
      return { img, row: tagRow(cosines(img, labelEmb, E), imgs, d.seen, d.unseen) };
    };
    const testNames = [...new Set([...d.testSingles, ...d.styleSingles].map((i) => i.name!))].sort();
    const nameEmbTest = await textEmbeddings(model, testNames, nameTemplate);
    const names = (img: Float32Array, imgs: Img[]) => {
      const nr = nameRetrieval(
        cosines(img, nameEmbTest, E),
        imgs.map((i) => i.name!),
        testNames,
      );
      return { ...nr, r1: r1(nr.r1), r5: r1(nr.r5) };
    };
    const tTok = await patchTokens(
      model,
      d.testScenes.map((s) => s.file),
    ); // tokens kept for the localisation
    const sTok = await patchTokens(
      model,
      d.styleScenes.map((s) => s.file),
    );
    const scenes = (await rowOf(d.testScenes, tTok.embeds)).row;
    const styleScenes = (await rowOf(d.styleScenes, sTok.embeds)).row;
    const s1 = await rowOf(d.testSingles);
    const s2 = await rowOf(d.styleSingles);
    log('test tags and names done; localisation ...');

    // --- localisation: member names through the chosen name template
    const memberNames = [
      ...new Set([...d.testScenes, ...d.styleScenes, ...d.pretrain].flatMap((s) => (s.members ?? []).map((m) => m.name))),
    ].sort();
    const nameVecs = await textEmbeddings(model, memberNames, nameTemplate);
    const nameEmb = new Map(memberNames.map((n, i) => [n, nameVecs.subarray(i * E, (i + 1) * E)]));
    const probeScenes = d.pretrain.slice(0, options.probeScenes ?? 1500);
    const pTok = await patchTokens(
      model,
      probeScenes.map((s) => s.file),
    );
    const probe = fitProbe(probeScenes, pTok, nameEmb, d.size, E);
    const G = Math.round(Math.sqrt(tTok.T));
    const loc: ScenesEvalResult['localisation'] = {
      grid: G,
      probe: localise(d.testScenes, tTok, nameEmb, d.size, probe, E),
      styleProbe: localise(d.styleScenes, sTok, nameEmb, d.size, probe, E),
      probeScenes: probeScenes.length,
    };
    // the model's own projection, where the graph exports it (pico-CLIP v2: `patch_embeds`)
    const own = await ClipModel.load(modelDir, { threads: 2, outputs: { patchTokens: 'patch_embeds' } }).catch(() => undefined);
    if (own) {
      try {
        const ownTok = await patchTokens(
          own,
          d.testScenes.map((s) => s.file),
        );
        loc.ownProjection = localise(d.testScenes, ownTok, nameEmb, d.size, (t) => t, E);
        const ownStyle = await patchTokens(
          own,
          d.styleScenes.map((s) => s.file),
        );
        loc.styleOwnProjection = localise(d.styleScenes, ownStyle, nameEmb, d.size, (t) => t, E);
      } catch (e) {
        if (!(e instanceof ClipDecoderError)) throw e; // no patch_embeds output: v1 and other CLIPs
      } finally {
        await own.dispose();
      }
    }
    return {
      model: modelDir,
      data: dataDir,
      templates: { name: nameTemplate, tags: tagTemplate },
      selection: { name: nameSel, tags: tagSel },
      test: {
        scenes,
        styleScenes,
        singles: { ...s1.row, names: names(s1.img, d.testSingles) },
        styleSingles: { ...s2.row, names: names(s2.img, d.styleSingles) },
      },
      localisation: loc,
      seconds: Math.round((performance.now() - t0) / 1000),
    };
  } finally {
    await model.dispose();
  }
}

/** The report as printed lines. */
export function formatScenes(r: ScenesEvalResult): string[] {
  const row = (name: string, x: TagRow) =>
    `  ${name.padEnd(22)} ${String(x.images).padStart(5)} img  ZSL mAP ${x.zsl.mAP.toFixed(1)} (chance ${x.zsl.chanceMAP.toFixed(1)}) F1@3 ${x.zsl.f1at3.toFixed(1)} F1@5 ${x.zsl.f1at5.toFixed(1)} | GZSL mAP ${x.gzsl.mAP.toFixed(1)} (chance ${x.gzsl.chanceMAP.toFixed(1)}) F1@3 ${x.gzsl.f1at3.toFixed(1)} F1@5 ${x.gzsl.f1at5.toFixed(1)}`;
  const t = r.test;
  const nm = (x: NameRetrieval) =>
    `R@1 ${x.r1.toFixed(1)} % (chance ${x.chanceR1.toFixed(2)}), R@5 ${x.r5.toFixed(1)} % (chance ${x.chanceR5.toFixed(2)}) among ${x.candidates} names`;
  const lc = (x?: Localisation) =>
    x
      ? `${x.rate.toFixed(1)} % vs random ${x.random.toFixed(1)} % (${x.ratio.toFixed(2)}×, ${x.members} members)`
      : 'n/a (no patch_embeds output)';
  return [
    `EmojiScenes TEST (${r.data}), model ${r.model}; templates: names "${r.templates.name}", tags "${r.templates.tags}" (chosen on validation)`,
    row('scenes', t.scenes),
    row('style-transfer scenes', t.styleScenes),
    row('single emoji', t.singles),
    row('single fxemoji', t.styleSingles),
    `  names, single emoji: ${nm(t.singles.names)}`,
    `  names, single fxemoji: ${nm(t.styleSingles.names)}`,
    `  localisation (${r.localisation.grid}×${r.localisation.grid} patches), own projection: ${lc(r.localisation.ownProjection)}`,
    `  localisation, probe fitted on ${r.localisation.probeScenes} P scenes: ${lc(r.localisation.probe)}`,
    `  style-transfer localisation: own ${lc(r.localisation.styleOwnProjection)}; probe ${lc(r.localisation.styleProbe)}`,
  ];
}
