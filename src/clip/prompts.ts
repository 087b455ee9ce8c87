// Label → prompt text(s) → CLIP text embedding. Several templates may be averaged (prompt ensembling).
import { ClipDecoderError } from '../errors.ts';
import { checkLabels } from '../labels.ts';
import type { ClipModel } from './model.ts';

export const DEFAULT_TEMPLATES: readonly string[] = ['a photo of {label}'];

export interface LabelEmbeddingOptions {
  /** Prompt templates; `{label}` is replaced by the label. Several are averaged. */
  templates?: readonly string[];
  /** L2-normalise each prompt embedding and the average (default true), as CLIP's prompt ensembling does. */
  normalize?: boolean;
}

export function fillTemplate(template: string, label: string): string {
  if (!template.includes('{label}')) {
    throw new ClipDecoderError('INPUT_INVALID', `prompt template "${template}" has no {label} placeholder`, template);
  }
  return template.replaceAll('{label}', label);
}

/**
 * Checks a label list: non-empty, no blank labels, no duplicates. Returns the labels trimmed. The one
 * label-list checker is src/labels.ts; here without count or length limits (training vocabularies).
 */
export function validateLabels(labels: readonly string[]): string[] {
  return checkLabels(labels, { maxLabels: Infinity, maxLength: Infinity });
}

export function l2normalizeRows(x: Float32Array, dim: number): Float32Array {
  for (let off = 0; off < x.length; off += dim) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[off + j]! * x[off + j]!;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < dim; j++) x[off + j]! *= inv;
  }
  return x;
}

/** Text embeddings of labels through prompt templates: [N, E]. */
export async function embedLabels(model: ClipModel, labels: readonly string[], options: LabelEmbeddingOptions = {}): Promise<Float32Array> {
  const clean = validateLabels(labels);
  const templates = options.templates ?? DEFAULT_TEMPLATES;
  if (templates.length === 0) throw new ClipDecoderError('INPUT_INVALID', 'no prompt templates given');
  const normalize = options.normalize ?? true;
  const E = model.embedDim;
  const N = clean.length;
  const sum = new Float32Array(N * E);
  for (const template of templates) {
    const emb = await model.encodeTexts(clean.map((l) => fillTemplate(template, l)));
    if (normalize) l2normalizeRows(emb, E);
    for (let i = 0; i < sum.length; i++) sum[i]! += emb[i]!;
  }
  if (normalize) return l2normalizeRows(sum, E);
  for (let i = 0; i < sum.length; i++) sum[i]! /= templates.length;
  return sum;
}
