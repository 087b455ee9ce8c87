// The CLIP encoder layer: ONNX vision and text sessions of a model folder (CLIP or SigLIP), run through
// onnxruntime-node. Images → patch tokens [B, T, C] + projected image embeddings [B, E]; texts → projected text
// embeddings [N, E]. Outputs are looked up by name; decoding of batch k+1 overlaps inference of batch k.
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import ort from 'onnxruntime-node';
import { ClipDecoderError } from '../errors.ts';
import type { ModelDtype } from './family.ts';
import { asFloat32, float32ToFloat16 } from './float16.ts';
import { openClipFolder, type ClipFolder } from './folder.ts';
import { configLogitScale, logitParamsWithoutOnnx, missingLogitParams, solveLogitParams, type LogitParams } from './logits.ts';
import { l2normalizeRows } from './prompts.ts';
import { TextTokenizer } from './tokenizer.ts';
import { resolveModelPath, type ResolveOptions } from './hub.ts';
import { preprocessInto, type ImageSource, type PreprocessOptions } from './preprocess.ts';

export interface ClipModelOptions extends ResolveOptions {
  /** Keep the CLS token in the patch tokens (default false: T = number of patches). */
  keepCls?: boolean;
  /** ONNX Runtime intra-op threads (default: all cores). */
  threads?: number;
  /** Output names, where a model names them otherwise. */
  outputs?: { patchTokens?: string; imageEmbeds?: string; textEmbeds?: string };
  /** Images with more pixels are refused (see preprocess.ts). */
  pixelLimit?: number;
  /** ONNX weights to run: fp32 (default) or a variant the folder carries (fp16, q8 = `_quantized`, ...). */
  dtype?: ModelDtype;
  /** The plain score's logit scale and bias (see logits.ts); by default read from the model folder. */
  logit?: { scale?: number; bias?: number };
}

/** One image's encoding: patch tokens [T, C] and projected embedding [E]. */
export interface ImageEncoding {
  tokens: Float32Array;
  imageEmbed: Float32Array;
}

/** The outcome for one input of encodeImages: an encoding, or the error that names the file. */
export type ImageResult =
  | ({ index: number; source: ImageSource; error?: undefined } & ImageEncoding)
  | { index: number; source: ImageSource; error: ClipDecoderError };

/** An image to encode, optionally with a training augmentation. */
export type ImageInput = ImageSource | { source: ImageSource; augment?: PreprocessOptions['augment'] };

export interface EncodeImagesOptions {
  /** Images per ONNX run (default 16). */
  batchSize?: number;
  /** Called after each batch with the number of images done. */
  onProgress?: (done: number, total: number) => void;
}

type Session = ort.InferenceSession;

export function sessionOptions(threads: number, spinning = process.env.CLIP_DECODER_ORT_SPIN === '1'): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Spinning threads wait for work by burning a core; with image decoding running beside inference that
    // stalls both, so by default the pool sleeps when idle.
    extra: { session: { intra_op: { allow_spinning: spinning ? '1' : '0' } } },
  };
}

export class ClipModel {
  readonly folder: ClipFolder;
  private readonly options: ClipModelOptions;
  private visionSession?: Promise<Session>;
  private textSession?: Promise<Session>;
  private readonly tokenizer: TextTokenizer;
  private logitParamsP?: Promise<LogitParams>;
  /** Patch tokens per image (T), from the config; every run checks the graph agrees. */
  readonly numTokens: number;
  private tokenWidth: number;
  readonly embedDim: number;

  /**
   * Width of the patch tokens (C): the config's hidden_size, checked on every run. A patch-token output chosen
   * by name (`outputs.patchTokens`, e.g. projected tokens) may have another width: the graph's is taken then.
   */
  get tokenDim(): number {
    return this.tokenWidth;
  }

  private constructor(folder: ClipFolder, options: ClipModelOptions) {
    this.folder = folder;
    this.options = options;
    const patches = (folder.imageSize.height / folder.patchSize) * (folder.imageSize.width / folder.patchSize);
    this.numTokens = patches + (options.keepCls && folder.spec.hasCls ? 1 : 0);
    this.tokenWidth = folder.visionHidden;
    this.embedDim = folder.projectionDim;
    // The parsed files directly: no global setting is touched, and CLIP's BPE, SigLIP's SentencePiece and
    // SigLIP 2's Gemma tokenizer are all plain tokenizer.json files.
    this.tokenizer = new TextTokenizer(folder.tokenizerJSON, folder.tokenizerConfig, `${folder.dir}/tokenizer.json`);
  }

  /** Loads a CLIP folder (local path, or hub id where a network or cache exists). Sessions open lazily. */
  static async load(pathOrId: string, options: ClipModelOptions = {}): Promise<ClipModel> {
    const dir = await resolveModelPath(pathOrId, options);
    return new ClipModel(await openClipFolder(dir, { dtype: options.dtype }), options);
  }

  get id(): string {
    return this.folder.id;
  }

  private threads(): number {
    return this.options.threads ?? availableParallelism();
  }

  private async open(path: string): Promise<Session> {
    try {
      return await ort.InferenceSession.create(path, sessionOptions(this.threads()));
    } catch (e) {
      throw new ClipDecoderError('MODEL_INVALID', `${path}: ONNX Runtime cannot load it (${(e as Error).message.split('\n')[0]})`, path, {
        cause: e,
      });
    }
  }

  /** Starts opening ONNX sessions now rather than on first use, so that loading them overlaps other work. */
  preload(which: 'vision' | 'text' | 'both' = 'both'): void {
    // Errors surface where the session is awaited; these handlers only keep them from being "unhandled".
    if (which !== 'text') this.vision().catch(() => {});
    if (which !== 'vision') this.text().catch(() => {});
  }

  private vision(): Promise<Session> {
    this.visionSession ??= this.open(this.folder.visionModelPath);
    return this.visionSession;
  }

  private text(): Promise<Session> {
    this.textSession ??= this.open(this.folder.textModelPath);
    return this.textSession;
  }

  private output(session: Session, result: ort.InferenceSession.OnnxValueMapType, name: string, path: string): ort.Tensor {
    const t = result[name];
    if (!t) {
      throw new ClipDecoderError(
        'MODEL_OUTPUT_MISSING',
        `${path}: has no output "${name}" (it has: ${session.outputNames.join(', ')}); pass the right name in the outputs option`,
        path,
      );
    }
    return t as ort.Tensor;
  }

  /** Input tensor size of one image: 3 × H × W. */
  get pixelsPerImage(): number {
    return 3 * this.folder.imageSize.height * this.folder.imageSize.width;
  }

  /**
   * Runs the vision model on preprocessed pixels [B, 3, H, W]. Returns the patch tokens [B, T, C] (CLS dropped
   * unless keepCls) and the image embeddings [B, E], as flat row-major arrays.
   */
  async encodePixels(pixels: Float32Array, batch: number): Promise<{ tokens: Float32Array; imageEmbeds: Float32Array }> {
    const { height: H, width: W } = this.folder.imageSize;
    if (pixels.length !== batch * 3 * H * W) {
      throw new ClipDecoderError('INPUT_INVALID', `pixels hold ${pixels.length} values, expected ${batch}×3×${H}×${W}`);
    }
    const session = await this.vision();
    const path = this.folder.visionModelPath;
    const inputName = session.inputNames.includes('pixel_values') ? 'pixel_values' : session.inputNames[0]!;
    // An fp16 variant may take its pixels as float16.
    const meta = session.inputMetadata?.find((m) => m.name === inputName);
    const half = meta?.isTensor === true && meta.type === 'float16';
    const input = half
      ? new ort.Tensor('float16', float32ToFloat16(pixels), [batch, 3, H, W])
      : new ort.Tensor('float32', pixels, [batch, 3, H, W]);
    const result = await session.run({ [inputName]: input });
    const hidden = this.output(session, result, this.options.outputs?.patchTokens ?? 'last_hidden_state', path);
    const embeds = this.output(session, result, this.options.outputs?.imageEmbeds ?? this.folder.spec.imageEmbedsOutput, path);
    const tokens = this.toTokens(hidden, batch, path);
    const e = asFloat32(embeds.data);
    if (embeds.dims.length !== 2 || embeds.dims[0] !== batch || embeds.dims[1] !== this.embedDim) {
      throw new ClipDecoderError(
        'MODEL_INVALID',
        `${path}: image embeddings have shape [${embeds.dims}], expected [${batch}, ${this.embedDim}] (config projection_dim)`,
        path,
      );
    }
    return { tokens, imageEmbeds: e };
  }

  // [B, T+1, C] transformer output (CLS first) or [B, C, h, w] feature map → [B, T, C].
  private toTokens(hidden: ort.Tensor, batch: number, path: string): Float32Array {
    const d = hidden.dims.map(Number);
    const data = asFloat32(hidden.data);
    let out: Float32Array;
    let T: number;
    let C: number;
    if (d.length === 3) {
      // 1 = drop the leading [CLS]; SigLIP's towers have none.
      const keep = this.folder.spec.hasCls && !this.options.keepCls ? 1 : 0;
      T = d[1]! - keep;
      C = d[2]!;
      out = keep === 0 ? data : new Float32Array(batch * T * C);
      if (keep) for (let b = 0; b < batch; b++) out.set(data.subarray((b * d[1]! + 1) * C, (b + 1) * d[1]! * C), b * T * C);
    } else if (d.length === 4) {
      C = d[1]!;
      T = d[2]! * d[3]!;
      out = new Float32Array(batch * T * C);
      for (let b = 0; b < batch; b++)
        for (let c = 0; c < C; c++) for (let t = 0; t < T; t++) out[(b * T + t) * C + c] = data[(b * C + c) * T + t]!;
    } else {
      throw new ClipDecoderError('MODEL_INVALID', `${path}: patch-token output has shape [${d}], expected [B, T, C] or [B, C, H, W]`, path);
    }
    if (this.options.outputs?.patchTokens !== undefined && T === this.numTokens) this.tokenWidth = C;
    if (T !== this.numTokens || C !== this.tokenDim) {
      // A config that disagrees with its graph would size heads and caches wrongly: refuse it by name.
      throw new ClipDecoderError(
        'MODEL_INVALID',
        `${path}: the vision model gives ${T} patch tokens of width ${C}, but config.json says ${this.numTokens} of width ${this.tokenDim} ` +
          '(image_size / patch_size squared, hidden_size): fix the config or re-export the model',
        path,
      );
    }
    return out;
  }

  /**
   * Encodes images, pipelined: while batch k runs in ONNX Runtime, batch k+1 is read and preprocessed (sharp
   * decodes on libuv's thread pool). A file that cannot be read or decoded yields an error naming it; the rest
   * of its batch is still encoded. Results come in input order.
   */
  async *encodeImages(inputs: readonly ImageInput[], options: EncodeImagesOptions & PreprocessOptions = {}): AsyncGenerator<ImageResult> {
    const B = Math.max(1, options.batchSize ?? 16);
    const per = this.pixelsPerImage;
    const pixelLimit = options.pixelLimit ?? this.options.pixelLimit;
    const { maxFileBytes } = options;
    const sources = inputs.map((x) => (typeof x === 'string' || x instanceof Uint8Array ? x : x.source));
    const prepare = async (start: number) => {
      const items = sources.slice(start, start + B);
      const pixels = new Float32Array(items.length * per);
      const errors = await Promise.all(
        items.map((src, i) => {
          const input = inputs[start + i]!;
          const augment = typeof input === 'string' || input instanceof Uint8Array ? undefined : input.augment;
          return preprocessInto(src, this.folder.preprocess, pixels, i * per, { pixelLimit, maxFileBytes, augment }).then(
            () => undefined,
            (e: unknown) =>
              e instanceof ClipDecoderError
                ? e
                : new ClipDecoderError('IMAGE_INVALID', `${String(src)}: ${(e as Error).message}`, String(src)),
          );
        }),
      );
      // Move the good images to the front so one ONNX run covers exactly them.
      const ok: number[] = [];
      errors.forEach((err, i) => {
        if (!err) {
          if (ok.length !== i) pixels.copyWithin(ok.length * per, i * per, (i + 1) * per);
          ok.push(i);
        }
      });
      return { start, items, errors, ok, pixels: pixels.subarray(0, ok.length * per) };
    };

    let next = sources.length > 0 ? prepare(0) : undefined;
    let done = 0;
    while (next) {
      const batch = await next;
      const after = batch.start + B;
      next = after < sources.length ? prepare(after) : undefined;
      const enc = batch.ok.length > 0 ? await this.encodePixels(batch.pixels, batch.ok.length) : undefined;
      const T = this.numTokens;
      const C = this.tokenDim;
      const E = this.embedDim;
      let k = 0;
      for (let i = 0; i < batch.items.length; i++) {
        const index = batch.start + i;
        const source = batch.items[i]!;
        const error = batch.errors[i];
        if (error) {
          yield { index, source, error };
        } else {
          yield {
            index,
            source,
            tokens: enc!.tokens.subarray(k * T * C, (k + 1) * T * C),
            imageEmbed: enc!.imageEmbeds.subarray(k * E, (k + 1) * E),
          };
          k++;
        }
      }
      done += batch.items.length;
      options.onProgress?.(done, sources.length);
    }
  }

  private get eosId(): number {
    const id = this.tokenizer.eosId ?? this.tokenizer.tokenToId('<|endoftext|>');
    if (typeof id !== 'number')
      throw new ClipDecoderError('MODEL_INVALID', `${this.folder.dir}/tokenizer.json: no <|endoftext|> token`, this.folder.dir);
    return id;
  }

  /**
   * Token ids and attention mask for texts, truncated to the model's maximum and padded to the longest (CLIP)
   * or to the maximum (SigLIP, whose text tower pools the last position and was trained on padded texts).
   */
  tokenize(texts: string[]): { ids: BigInt64Array; mask: BigInt64Array; length: number } {
    const { ids, mask, length } = this.tokenizer.encodeBatch(texts, {
      padding: this.folder.spec.padding,
      maxLength: this.folder.textMaxLength,
    });
    if (this.folder.spec.family !== 'clip') return { ids, mask, length };
    // transformers.js truncates the special tokens away too; CLIP pools at the end-of-text token, so a text
    // cut at max_length must still end with it (as OpenAI's clip.tokenize does).
    const eos = BigInt(this.eosId);
    for (let r = 0; r < texts.length; r++) {
      let last = -1;
      for (let j = 0; j < length; j++) if (mask[r * length + j] === 1n) last = j;
      if (last >= 0 && ids[r * length + last] !== eos) ids[r * length + last] = eos;
    }
    return { ids, mask, length };
  }

  /** Projected text embeddings [N, E] (as the model outputs them: not normalised). */
  async encodeTexts(texts: string[], options: { batchSize?: number } = {}): Promise<Float32Array> {
    const E = this.embedDim;
    const out = new Float32Array(texts.length * E);
    if (texts.length === 0) return out;
    const session = await this.text();
    const path = this.folder.textModelPath;
    const B = Math.max(1, options.batchSize ?? 64);
    for (let start = 0; start < texts.length; start += B) {
      const chunk = texts.slice(start, start + B);
      const { ids, mask, length } = this.tokenize(chunk);
      const feeds: Record<string, ort.Tensor> = {};
      for (const name of session.inputNames) {
        if (name === 'input_ids') feeds[name] = new ort.Tensor('int64', ids, [chunk.length, length]);
        else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', mask, [chunk.length, length]);
        else throw new ClipDecoderError('MODEL_INVALID', `${path}: unexpected input "${name}" (expected input_ids, attention_mask)`, path);
      }
      const result = await session.run(feeds);
      const t = this.output(session, result, this.options.outputs?.textEmbeds ?? this.folder.spec.textEmbedsOutput, path);
      if (t.dims.length !== 2 || t.dims[1] !== E) {
        throw new ClipDecoderError(
          'MODEL_INVALID',
          `${path}: text embeddings have shape [${t.dims}], expected [N, ${E}] (config projection_dim)`,
          path,
        );
      }
      out.set(asFloat32(t.data), start * E);
    }
    return out;
  }

  /**
   * Checks now (opening both sessions) that the towers output the projected embeddings that CLIP's own
   * image–label score needs, and refuses a model exported without a projection by name; `why` says which mode
   * needs them (e.g. "plain CLIP scoring (--head none)").
   */
  async checkEmbeddingOutputs(why: string): Promise<void> {
    const towers = [
      ['image', this.vision(), this.folder.visionModelPath, this.options.outputs?.imageEmbeds ?? this.folder.spec.imageEmbedsOutput],
      ['text', this.text(), this.folder.textModelPath, this.options.outputs?.textEmbeds ?? this.folder.spec.textEmbedsOutput],
    ] as const;
    for (const [what, session, path, name] of towers) {
      const names = (await session).outputNames;
      if (!names.includes(name)) {
        throw new ClipDecoderError(
          'MODEL_OUTPUT_MISSING',
          `${why} needs the ${what} embedding (the ${what} projection), but ${path} has no output "${name}" (it has: ${names.join(', ')}): ` +
            'export the tower with its projection (CLIPVisionModelWithProjection / CLIPTextModelWithProjection, as the Xenova/clip-* repos do)',
          path,
        );
      }
    }
  }

  /** The plain score's scale and bias (see logits.ts), found once per model. */
  logitParams(): Promise<LogitParams> {
    this.logitParamsP ??= (async () => {
      const { dir, spec } = this.folder;
      const found = await logitParamsWithoutOnnx(dir, spec.family, this.options.logit);
      if (found) return found;
      const full = `${dir}/onnx/model.onnx`;
      if (existsSync(full)) {
        const { scale, bias } = solveLogitParams(await this.probeFullModel(full), full);
        return {
          scale: this.options.logit?.scale ?? scale,
          bias: this.options.logit?.bias ?? (spec.family === 'clip' ? 0 : bias),
          source: 'onnx/model.onnx',
        };
      }
      if (spec.family === 'siglip') throw missingLogitParams(dir);
      return {
        scale: this.options.logit?.scale ?? configLogitScale(this.folder.configRaw),
        bias: this.options.logit?.bias ?? 0,
        source: 'config.json',
      };
    })();
    this.logitParamsP.catch(() => (this.logitParamsP = undefined));
    return this.logitParamsP;
  }

  // One run of the full model (both towers + logit scale and bias) on a grey image and two texts.
  private async probeFullModel(path: string) {
    const session = await this.open(path);
    try {
      const { height: H, width: W } = this.folder.imageSize;
      const texts = ['a photo', 'x'];
      const { ids, mask, length } = this.tokenize(texts);
      const feeds: Record<string, ort.Tensor> = {};
      for (const name of session.inputNames) {
        if (name === 'input_ids') feeds[name] = new ort.Tensor('int64', ids, [2, length]);
        else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', mask, [2, length]);
        else if (name === 'pixel_values') feeds[name] = new ort.Tensor('float32', new Float32Array(3 * H * W).fill(0.25), [1, 3, H, W]);
        else
          throw new ClipDecoderError(
            'MODEL_INVALID',
            `${path}: unexpected input "${name}" (expected input_ids, attention_mask, pixel_values)`,
            path,
          );
      }
      const r = await session.run(feeds);
      const need = (n: string) => asFloat32(this.output(session, r, n, path).data);
      const logits = need('logits_per_image');
      const img = l2normalizeRows(Float32Array.from(need('image_embeds')), this.embedDim);
      const txt = l2normalizeRows(Float32Array.from(need('text_embeds')), this.embedDim);
      const cos = [0, 1].map((n) => img.reduce((s, v, j) => s + v * txt[n * this.embedDim + j]!, 0));
      return { logits: [logits[0]!, logits[1]!] as [number, number], cosines: cos as [number, number] };
    } finally {
      await session.release();
    }
  }

  /**
   * Plain zero-shot logits [B, N] = s·cos(image, text) + b from image embeddings [B, E] and text embeddings
   * [N, E] (neither need be normalised); sigmoid gives SigLIP's own probabilities.
   */
  async plainLogits(imageEmbeds: Float32Array, textEmbeds: Float32Array): Promise<Float32Array> {
    const { scale, bias } = await this.logitParams();
    const E = this.embedDim;
    const B = imageEmbeds.length / E;
    const N = textEmbeds.length / E;
    const img = l2normalizeRows(Float32Array.from(imageEmbeds), E);
    const txt = l2normalizeRows(Float32Array.from(textEmbeds), E);
    const out = new Float32Array(B * N);
    for (let b = 0; b < B; b++) {
      for (let n = 0; n < N; n++) {
        let dot = 0;
        for (let j = 0; j < E; j++) dot += img[b * E + j]! * txt[n * E + j]!;
        out[b * N + n] = scale * dot + bias;
      }
    }
    return out;
  }

  /** Releases the ONNX sessions. */
  async dispose(): Promise<void> {
    const sessions = [this.visionSession, this.textSession];
    this.visionSession = this.textSession = undefined;
    for (const s of sessions) if (s) await (await s.catch(() => undefined))?.release();
  }
}
