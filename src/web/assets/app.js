// The in-browser tagger: CLIP vision + text towers and the CLIP-Decoder head, all ONNX, run by onnxruntime-web
// (WASM; threads when the page is cross-origin isolated), with @huggingface/tokenizers for the prompts. Files
// come from this folder only (manifest.json says which); nothing is fetched from elsewhere. The view (bars,
// overlay, status) is the server page's (src/serve/page.ts), given this page's tag function.
import * as ort from './vendor/ort.wasm.min.mjs';
import { Tokenizer } from './vendor/tokenizers.min.mjs';
import { ensemble, fusedProbabilities, preprocessRgb, rgbaToRgb, tokenBatch } from './lib.js';

const page = window.clipDecoderPage({ tag, ready: false, cannotShow: 'this browser cannot show that file' });
// What the test and the docs read: load and first-tag times, threads.
const stats = (window.clipDecoderStats = { loadMs: null, firstTagMs: null, tagMs: [], threads: 1, isolated: self.crossOriginIsolated });
const here = new URL('./', import.meta.url);

async function fetchOk(path, as) {
  let res;
  try {
    res = await fetch(new URL(path, here));
  } catch (e) {
    throw new Error(`${path}: cannot fetch (${e.message})`);
  }
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${res.statusText}`);
  return as === 'json' ? res.json() : new Uint8Array(await res.arrayBuffer());
}

async function session(path) {
  const bytes = await fetchOk(path);
  try {
    return await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  } catch (e) {
    throw new Error(`${path}: ONNX Runtime cannot load it (${String(e.message || e).split('\n')[0]})`);
  }
}

async function loadAll() {
  const manifest = await fetchOk('manifest.json', 'json');
  ort.env.wasm.wasmPaths = new URL('vendor/', here).href;
  // Threads need SharedArrayBuffer, which only a cross-origin isolated page has (COOP + COEP headers).
  stats.threads = ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const [tokJson, tokConfig, vision, text, head] = await Promise.all([
    fetchOk(manifest.files.tokenizer, 'json'),
    fetchOk(manifest.files.tokenizerConfig, 'json'),
    session(manifest.files.vision),
    session(manifest.files.text),
    session(manifest.files.head),
  ]);
  let tokenizer;
  try {
    tokenizer = new Tokenizer(tokJson, tokConfig);
  } catch (e) {
    throw new Error(`${manifest.files.tokenizer}: not a usable tokenizer (${e.message})`);
  }
  return { manifest, tokenizer, vision, text, head };
}

const models = loadAll();
models.then(
  (m) => {
    stats.loadMs = Math.round(performance.now());
    document.getElementById('labels').value = m.manifest.defaultLabels.join(', ');
    page.setReady(true);
    const sc = m.manifest.scoring;
    const how = sc ? `${sc.mode.scoring}${sc.mode.calibrated ? `, calibrated, threshold ${sc.threshold}` : ''}` : 'head';
    page.setStatus(
      `${m.manifest.model} + head (${how}) loaded in ${stats.loadMs} ms (WASM, ${stats.threads} thread${stats.threads > 1 ? 's' : ''})`,
    );
  },
  (e) => {
    window.clipDecoderLoadError = String(e.message || e);
    page.setStatus(`cannot load the model: ${e.message || e}`, true);
  },
);

// Label text → its query (prompt ensemble of CLIP text embeddings), kept for the page's lifetime.
const queryCache = new Map();

async function encodeTexts(m, texts) {
  const t = m.manifest.text;
  const rows = texts.map((s) => m.tokenizer.encode(s).ids);
  const { ids, mask, length } = tokenBatch(rows, t);
  const feeds = {};
  for (const name of m.text.inputNames) {
    if (name === 'input_ids') feeds[name] = new ort.Tensor('int64', ids, [texts.length, length]);
    else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', mask, [texts.length, length]);
    else throw new Error(`${m.manifest.files.text}: unexpected input "${name}" (expected input_ids, attention_mask)`);
  }
  const out = (await m.text.run(feeds))[t.output];
  if (!out) throw new Error(`${m.manifest.files.text}: no output "${t.output}"`);
  return Float32Array.from(out.data);
}

async function labelQueries(m, labels) {
  const { templates, normalize } = m.manifest.prompts;
  const E = m.manifest.embedDim;
  const missing = labels.filter((l) => !queryCache.has(l));
  if (missing.length) {
    const perTemplate = [];
    for (const tpl of templates)
      perTemplate.push(
        await encodeTexts(
          m,
          missing.map((l) => tpl.replaceAll('{label}', l)),
        ),
      );
    const q = ensemble(perTemplate, E, normalize);
    missing.forEach((l, i) => queryCache.set(l, q.slice(i * E, (i + 1) * E)));
  }
  const out = new Float32Array(labels.length * E);
  labels.forEach((l, i) => out.set(queryCache.get(l), i * E));
  return out;
}

/** The image's RGB pixels at full size, alpha composited on white (as sharp's flatten does). */
async function decode(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`${file.name || 'the file'}: not a readable image (the browser cannot decode it)`);
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { rgb: rgbaToRgb(ctx.getImageData(0, 0, width, height).data), width, height };
}

function parseLabels(text) {
  const labels = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!labels.length) throw new Error('no labels: type some, comma-separated');
  const seen = new Set();
  for (const l of labels) {
    if (seen.has(l)) throw new Error(`label "${l}" is given twice`);
    seen.add(l);
  }
  return labels;
}

async function tag(file, labelsText) {
  const m = await models;
  const t0 = performance.now();
  const labels = parseLabels(labelsText);
  const mf = m.manifest;
  const { rgb, width, height } = await decode(file);
  const { height: H, width: W } = mf.imageSize;
  const pixels = preprocessRgb(rgb, width, height, mf.preprocess);
  const vis = await m.vision.run({ [mf.vision.input]: new ort.Tensor('float32', pixels, [1, 3, H, W]) });
  const hidden = vis[mf.vision.output];
  if (!hidden) throw new Error(`${mf.files.vision}: no output "${mf.vision.output}"`);
  const [, T1, C] = hidden.dims;
  const skip = mf.vision.dropCls ? 1 : 0;
  const T = T1 - skip;
  const tokens = hidden.data.subarray(skip * C, T1 * C);
  const queries = await labelQueries(m, labels);
  const out = await m.head.run({
    patch_tokens: new ort.Tensor('float32', tokens, [1, T, C]),
    label_embeds: new ort.Tensor('float32', queries, [labels.length, mf.embedDim]),
  });
  // CLIP-Decoder+: the head's logits fused with CLIP's own score of the image embedding (the Tagger's formula)
  const scoring = mf.scoring || { weights: null, trainedLabels: [] };
  let imageEmbed = null;
  if (scoring.weights) {
    const emb = vis[mf.vision.imageEmbeds];
    if (!emb) throw new Error(`${mf.files.vision}: no output "${mf.vision.imageEmbeds}" (the image embedding the fused score needs)`);
    imageEmbed = emb.data;
  }
  const probs = fusedProbabilities(out.logits.data, imageEmbed, queries, labels, mf.embedDim, scoring),
    attn = out.attention.data;
  const cells = mf.grid.height * mf.grid.width;
  const result = labels.map((label, n) => ({
    label,
    probability: probs[n],
    // the CLS token's weight (a head trained with it) is dropped: the map is exactly the patch grid
    attention: Array.from(attn.subarray(n * T + (T - cells), (n + 1) * T)),
  }));
  result.sort((a, b) => b.probability - a.probability);
  const ms = Math.round(performance.now() - t0);
  stats.tagMs.push(ms);
  stats.firstTagMs ??= Math.round(performance.now());
  return { labels: result, grid: mf.grid, model: mf.model, mode: scoring.mode, threshold: scoring.threshold ?? null, ms };
}
