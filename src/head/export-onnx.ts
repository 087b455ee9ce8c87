// The head's inference graph as ONNX (opset 17, default domain only, so onnxruntime-web's WASM backend runs it):
// exactly `prepareLabels` + `predict` of head.ts, with the label queries (CLIP text embeddings) as an input so
// any label set works. Shapes: B images, T tokens of width C, N labels of width E, decoder width D, H heads of
// hd = D/H, FFN width F.
//
//   patch_tokens [B, T, C] ─ MatMul+Add+Relu ─ m [B, T, D] ─ k, v [B, H, hd, T], [B, H, T, hd]
//   label_embeds [N, E] ─ Gemm+Relu ─ tq ─ LN1(tq + tq) ─ t1 [N, D] ─ Gemm ─ q [H, N, hd]
//   softmax(q kᵀ / √hd) [B, H, N, T] ─ ·v ─ out-proj ─ a [B, N, D];  t2 = LN2(t1 + a);  t3 = LN3(t2 + FFN(t2))
//   logits = t3 · w + bias [B, N];  probabilities = sigmoid(logits);  attention = mean over heads [B, N, T]
//
// Built as named stages (memory, queries, decoder layer, shared FC, outputs) so that the CLIP-Decoder+ global
// stream (an `image_embeds` input scored by s·cos against `label_embeds`) and its calibration can be added as
// stages between the shared FC and the outputs, with the outputs' names unchanged.
import { ClipDecoderError } from '../errors.ts';
import { encodeModel, type AttrValue, type NodeSpec, type TensorSpec, type ValueInfo } from '../nn/onnx.ts';
import type { CheckpointMeta } from '../train/checkpoint.ts';
import type { ClipDecoderHead } from './head.ts';

/** Names of the graph's inputs and outputs (what a caller feeds and fetches). */
export const HEAD_ONNX = {
  inputs: { tokens: 'patch_tokens', queries: 'label_embeds' },
  outputs: { logits: 'logits', probabilities: 'probabilities', attention: 'attention' },
} as const;

/** The opset the graph is written for: LayerNormalization needs 17. */
export const HEAD_ONNX_OPSET = 17;

export interface HeadOnnxOptions {
  /** Also output the head-averaged attention weights [B, N, T] (default true; fetching it is optional). */
  attention?: boolean;
  /** The checkpoint's metadata, recorded in the model's metadata_props (prompt templates, model id...). */
  meta?: CheckpointMeta;
}

/** A graph under construction: nodes, initializers, and fresh value names. */
class Graph {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: TensorSpec[] = [];
  private n = 0;

  constant(name: string, dims: number[], data: Float32Array | BigInt64Array): string {
    this.initializers.push({ name, dims, data });
    return name;
  }

  /** A constant shape for Reshape (0 copies the input's dimension, -1 is inferred). */
  shape(name: string, dims: number[]): string {
    return this.constant(name, [dims.length], BigInt64Array.from(dims, BigInt));
  }

  op(opType: string, inputs: string[], attrs?: Record<string, AttrValue>, output?: string): string {
    const out = output ?? `${opType.toLowerCase()}_${this.n++}`;
    this.nodes.push({ opType, inputs, outputs: [out], attrs });
    return out;
  }
}

/** A [rows, cols] matrix transposed (PyTorch's Linear weight [out, in] → MatMul's [in, out]). */
function transposed(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c]!;
  return t;
}

/** Refuses what the graph cannot express, naming it. */
function checkExportable(head: ClipDecoderHead): void {
  const cfg = head.config;
  if (cfg.mode !== 'zero-shot') {
    throw new ClipDecoderError(
      'EXPORT_UNSUPPORTED',
      `cannot export a ${cfg.mode} head: its queries are fixed and its group FC scores only the ${cfg.numClasses} trained classes, ` +
        'while the exported graph takes any label set as its label_embeds input; export a zero-shot (CLIP-Decoder) head',
      'mode',
    );
  }
}

/** The head's inference graph as ONNX ModelProto bytes. */
export function headToOnnx(head: ClipDecoderHead, opts: HeadOnnxOptions = {}): Uint8Array {
  checkExportable(head);
  const { inputDim: C, queryDim: E, dModel: D, heads: H, ffnDim: F, layerNormEps: eps } = head.config;
  const hd = D / H;
  const g = new Graph();
  const w = (p: { data: Float32Array; shape: readonly number[] }, name: string) => g.constant(name, [...p.shape], p.data);
  const wT = (p: { data: Float32Array }, name: string, rows: number, cols: number) =>
    g.constant(name, [cols, rows], transposed(p.data, rows, cols));
  const ln = (x: string, n: { weight: { data: Float32Array; shape: readonly number[] }; bias: typeof n.weight }, name: string) =>
    g.op('LayerNormalization', [x, w(n.weight, `${name}.weight`), w(n.bias, `${name}.bias`)], { axis: -1, epsilon: { float: eps } });
  const inProj = head.attn.inProjWeight.data,
    inBias = head.attn.inProjBias.data;
  const slice = (a: Float32Array, i: number, n: number) => a.slice(i * n, (i + 1) * n);

  // memory: m = ReLU(x W_eᵀ + b_e)                           [B, T, C] → [B, T, D]
  const x = HEAD_ONNX.inputs.tokens;
  const m = g.op('Relu', [
    g.op('Add', [g.op('MatMul', [x, wT(head.embed.weight, 'embed.weight_t', D, C)]), w(head.embed.bias, 'embed.bias')]),
  ]);
  // keys and values by head                                 [B, T, D] → [B, H, hd, T] (kᵀ), [B, H, T, hd]
  const kv = (i: 1 | 2, name: string) => {
    const proj = g.op('Add', [
      g.op('MatMul', [m, g.constant(`attn.${name}_weight_t`, [D, D], transposed(slice(inProj, i, D * D), D, D))]),
      g.constant(`attn.${name}_bias`, [D], slice(inBias, i, D)),
    ]);
    return g.op('Reshape', [proj, g.shape(`shape.${name}_heads`, [0, 0, H, hd])]);
  };
  const kT = g.op('Transpose', [kv(1, 'k')], { perm: [0, 2, 3, 1] });
  const v = g.op('Transpose', [kv(2, 'v')], { perm: [0, 2, 1, 3] });

  // queries (image-independent): tq = ReLU(q W_qᵀ + b_q), t1 = LN1(tq + tq)   [N, E] → [N, D]
  const qp = head.queryProj!;
  const tq = g.op('Relu', [
    g.op('Gemm', [HEAD_ONNX.inputs.queries, w(qp.weight, 'query_proj.weight'), w(qp.bias, 'query_proj.bias')], { transB: 1 }),
  ]);
  const t1 = ln(g.op('Add', [tq, tq]), head.norm1, 'norm1');
  // attention queries by head                               [N, D] → [H, N, hd]
  const qFlat = g.op(
    'Gemm',
    [t1, g.constant('attn.q_weight', [D, D], slice(inProj, 0, D * D)), g.constant('attn.q_bias', [D], slice(inBias, 0, D))],
    { transB: 1 },
  );
  const q = g.op('Transpose', [g.op('Reshape', [qFlat, g.shape('shape.q_heads', [0, H, hd])])], { perm: [1, 0, 2] });

  // decoder layer: p = softmax(q kᵀ / √hd)                  [H, N, hd] × [B, H, hd, T] → [B, H, N, T]
  const scores = g.op('Mul', [g.op('MatMul', [q, kT]), g.constant('attn.scale', [], Float32Array.of(1 / Math.sqrt(hd)))]);
  const p = g.op('Softmax', [scores], { axis: -1 });
  // a = concat_heads(p v) W_oᵀ + b_o                        [B, H, N, hd] → [B, N, D]
  const ctx = g.op('Reshape', [
    g.op('Transpose', [g.op('MatMul', [p, v])], { perm: [0, 2, 1, 3] }),
    g.shape('shape.concat_heads', [0, 0, D]),
  ]);
  const a = g.op('Add', [
    g.op('MatMul', [ctx, wT(head.attn.outProjWeight, 'attn.out_proj.weight_t', D, D)]),
    w(head.attn.outProjBias, 'attn.out_proj.bias'),
  ]);
  // t2 = LN2(t1 + a), t1 broadcast over images              [B, N, D]
  const t2 = ln(g.op('Add', [t1, a]), head.norm2, 'norm2');
  // t3 = LN3(t2 + W2 ReLU(W1 t2 + b1) + b2)                 [B, N, D] → [B, N, F] → [B, N, D]
  const h = g.op('Relu', [
    g.op('Add', [g.op('MatMul', [t2, wT(head.linear1.weight, 'linear1.weight_t', F, D)]), w(head.linear1.bias, 'linear1.bias')]),
  ]);
  const f = g.op('Add', [g.op('MatMul', [h, wT(head.linear2.weight, 'linear2.weight_t', D, F)]), w(head.linear2.bias, 'linear2.bias')]);
  const t3 = ln(g.op('Add', [t2, f]), head.norm3, 'norm3');

  // shared FC: logit = t3 · w + bias                        [B, N, D] × [D, 1] → [B, N]
  const fc = g.op('Add', [g.op('MatMul', [t3, w(head.fc.weight, 'fc.weight')]), w(head.fc.bias, 'fc.bias')]);
  // (CLIP-Decoder+ would fuse the global stream and calibrate here, before the outputs.)
  const { logits, probabilities, attention } = HEAD_ONNX.outputs;
  g.op('Reshape', [fc, g.shape('shape.logits', [0, -1])], undefined, logits);
  g.op('Sigmoid', [logits], undefined, probabilities);

  const B = 'batch',
    T = 'tokens',
    N = 'labels';
  const outputs: ValueInfo[] = [
    { name: logits, shape: [B, N] },
    { name: probabilities, shape: [B, N] },
  ];
  if (opts.attention !== false) {
    g.op('ReduceMean', [p], { axes: [1], keepdims: 0 }, attention);
    outputs.push({ name: attention, shape: [B, N, T] });
  }
  return encodeModel({
    name: 'clip_decoder_head',
    inputs: [
      { name: HEAD_ONNX.inputs.tokens, shape: [B, T, C] },
      { name: HEAD_ONNX.inputs.queries, shape: [N, E] },
    ],
    outputs,
    nodes: g.nodes,
    initializers: g.initializers,
    doc:
      'CLIP-Decoder head (ML-Decoder cross-attention over CLIP patch tokens, queries = CLIP text embeddings of the labels). ' +
      'Inputs: patch_tokens [batch, tokens, C], label_embeds [labels, E]. Outputs: logits, probabilities [batch, labels], attention [batch, labels, tokens].',
    metadata: headMetadata(head, opts.meta),
  });
}

/** What a consumer needs besides the weights: how to build label_embeds and patch_tokens for this head. */
function headMetadata(head: ClipDecoderHead, meta: CheckpointMeta | undefined): Record<string, string> {
  return {
    'clip_decoder.format': 'clip-decoder-head-onnx/1',
    'clip_decoder.config': JSON.stringify(head.config),
    'clip_decoder.clip_model': meta?.clipModel ?? '',
    'clip_decoder.prompt_templates': JSON.stringify(meta?.promptTemplates ?? []),
    'clip_decoder.normalize_queries': String(meta?.extra?.normalizeQueries !== false),
    'clip_decoder.keep_cls': String(meta?.extra?.keepCls === true),
  };
}

export interface ExportHeadOptions extends HeadOnnxOptions {
  /** Head checkpoint folder. */
  head: string;
  /** Where to write the .onnx file (atomically). */
  out: string;
}

/** Loads a head checkpoint and writes its graph; returns the file's size in bytes. */
export async function exportHeadOnnx(opts: ExportHeadOptions): Promise<{ bytes: number }> {
  const [{ loadCheckpoint }, { TsMatmul }, { writeFileAtomic }] = await Promise.all([
    import('../train/checkpoint.ts'),
    import('../nn/matmul.ts'),
    import('../util/fs.ts'),
  ]);
  // The weights are only read: the pure-TS backend needs no native binding.
  const ck = await loadCheckpoint(opts.head, new TsMatmul());
  const bytes = headToOnnx(ck.head, { ...opts, meta: opts.meta ?? ck.meta });
  try {
    await writeFileAtomic(opts.out, bytes);
  } catch (e) {
    throw new ClipDecoderError(
      'OUTPUT_UNWRITABLE',
      `--out ${opts.out}: cannot write (${(e as NodeJS.ErrnoException).code ?? e})`,
      opts.out,
      {
        cause: e,
      },
    );
  }
  return { bytes: bytes.byteLength };
}
