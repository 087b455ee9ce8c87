// Word vectors learned from caption text alone (no images): skip-gram with negative sampling (word2vec) over
// the words that share a caption. They are the "non-aligned" label queries of the ML-Decoder paper (which used
// fastText), the baseline that CLIP text queries must beat. Like fastText, a word the corpus never saw gets
// the average vector of the known words that share its character trigrams, so any label has a vector.
import { ClipDecoderError } from '../errors.ts';
import { createRng } from '../data/random.ts';

export interface WordVecOptions {
  dim?: number;
  epochs?: number;
  negatives?: number;
  learningRate?: number;
  /** Words seen fewer times are dropped from the vocabulary. */
  minCount?: number;
  /** Context words drawn per word of a caption (all of them when the caption is shorter). */
  contexts?: number;
  seed?: number;
}

export interface WordVectors {
  dim: number;
  vocab: Map<string, number>;
  /** [V, dim] input vectors. */
  vectors: Float32Array;
}

/** Lower-cased alphabetic words of a caption. */
export function captionWords(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+/g) ?? [];
}

/** Trains skip-gram vectors where every pair of words in one caption is a (word, context) pair. */
export function trainWordVectors(captions: readonly string[], options: WordVecOptions = {}): WordVectors {
  const dim = options.dim ?? 64;
  const epochs = options.epochs ?? 5;
  const K = options.negatives ?? 5;
  const lr0 = options.learningRate ?? 0.025;
  const minCount = options.minCount ?? 1;
  const contexts = options.contexts ?? 6;
  const rng = createRng(options.seed ?? 0);

  const counts = new Map<string, number>();
  const docs = captions.map(captionWords);
  for (const d of docs) for (const w of d) counts.set(w, (counts.get(w) ?? 0) + 1);
  const vocab = new Map<string, number>();
  for (const [w, c] of [...counts].sort((a, b) => (a[0] < b[0] ? -1 : 1))) if (c >= minCount) vocab.set(w, vocab.size);
  const V = vocab.size;
  if (V === 0) throw new ClipDecoderError('INPUT_INVALID', 'word vectors: the caption corpus has no words');
  const ids = docs.map((d) => d.map((w) => vocab.get(w)).filter((i): i is number => i !== undefined));

  // Negative sampling table ∝ count^0.75, as word2vec.
  const freq = new Float64Array(V);
  for (const [w, i] of vocab) freq[i] = counts.get(w)! ** 0.75;
  const table = new Int32Array(Math.max(V * 20, 1000));
  {
    let total = 0;
    for (const f of freq) total += f;
    let i = 0;
    let acc = freq[0]! / total;
    for (let t = 0; t < table.length; t++) {
      table[t] = i;
      if ((t + 1) / table.length > acc && i < V - 1) acc += freq[++i]! / total;
    }
  }

  const win = new Float32Array(V * dim); // input vectors
  const wout = new Float32Array(V * dim); // output vectors (start at zero, as word2vec)
  for (let i = 0; i < win.length; i++) win[i] = (rng.next() - 0.5) / dim;
  const grad = new Float32Array(dim);
  const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
  let pairsTotal = 0;
  for (const d of ids) pairsTotal += d.length * Math.min(contexts, d.length - 1);
  const steps = Math.max(1, pairsTotal * epochs);
  let step = 0;
  const order = ids.map((_, i) => i);
  for (let ep = 0; ep < epochs; ep++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (const di of order) {
      const d = ids[di]!;
      for (let a = 0; a < d.length; a++) {
        // Every other word of the caption is context; long captions draw `contexts` of them (bag of words).
        const all = d.length - 1 <= contexts;
        for (let c = 0; c < (all ? d.length : contexts); c++) {
          const b = all ? c : (a + 1 + rng.int(d.length - 1)) % d.length;
          if (a === b) continue;
          const lr = lr0 * Math.max(1e-4, 1 - step++ / steps);
          const w = d[a]! * dim;
          grad.fill(0);
          for (let k = 0; k <= K; k++) {
            const c = k === 0 ? d[b]! : table[rng.int(table.length)]!;
            if (k > 0 && c === d[b]) continue;
            const label = k === 0 ? 1 : 0;
            const co = c * dim;
            let dot = 0;
            for (let j = 0; j < dim; j++) dot += win[w + j]! * wout[co + j]!;
            const g = (label - sigmoid(dot)) * lr;
            for (let j = 0; j < dim; j++) {
              grad[j]! += g * wout[co + j]!;
              wout[co + j]! += g * win[w + j]!;
            }
          }
          for (let j = 0; j < dim; j++) win[w + j]! += grad[j]!;
        }
      }
    }
  }
  return { dim, vocab, vectors: win };
}

function trigrams(word: string): Set<string> {
  const s = `<${word}>`;
  const out = new Set<string>();
  for (let i = 0; i + 3 <= s.length; i++) out.add(s.slice(i, i + 3));
  return out;
}

/**
 * The vector of a label: the average of its words' vectors; a word outside the vocabulary borrows the average of
 * the known words sharing most of its character trigrams. Returns [N, dim] and which labels needed the fallback.
 */
export function labelVectors(wv: WordVectors, labels: readonly string[]): { vectors: Float32Array; outOfVocabulary: string[] } {
  const { dim, vocab, vectors } = wv;
  const out = new Float32Array(labels.length * dim);
  const oov: string[] = [];
  const vocabGrams = [...vocab.keys()].map((w) => ({ w, g: trigrams(w) }));
  labels.forEach((label, li) => {
    const words = captionWords(label);
    let n = 0;
    for (const word of words) {
      let rows: number[] = [];
      const id = vocab.get(word);
      if (id !== undefined) rows = [id];
      else {
        oov.push(label);
        const g = trigrams(word);
        let best = 0;
        for (const v of vocabGrams) {
          let shared = 0;
          for (const t of g) if (v.g.has(t)) shared++;
          const score = shared / (g.size + v.g.size - shared);
          if (score > best + 1e-12) {
            best = score;
            rows = [vocab.get(v.w)!];
          } else if (score > 0 && Math.abs(score - best) <= 1e-12) rows.push(vocab.get(v.w)!);
        }
      }
      for (const r of rows) for (let j = 0; j < dim; j++) out[li * dim + j]! += vectors[r * dim + j]! / rows.length;
      if (rows.length) n++;
    }
    if (n > 1) for (let j = 0; j < dim; j++) out[li * dim + j]! /= n;
  });
  return { vectors: out, outOfVocabulary: [...new Set(oov)] };
}
