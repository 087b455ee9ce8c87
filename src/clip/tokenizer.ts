// Text → padded token-id batches, on @huggingface/tokenizers (the tokenizer library transformers.js bundles; on
// its own it loads in about 10 ms, where importing transformers.js costs 100–200 ms of every start-up here).
// Reproduces transformers.js's PreTrainedTokenizer call: special tokens added, each text truncated to the
// maximum length, then padded (right unless tokenizer_config says otherwise) to the longest or to the maximum.
import { Tokenizer } from '@huggingface/tokenizers';
import { ClipDecoderError } from '../errors.ts';

export interface TokenBatch {
  /** [N, length] token ids and attention mask (1 = token, 0 = padding), row-major. */
  ids: BigInt64Array;
  mask: BigInt64Array;
  length: number;
}

// tokenizer_config.json names a token as a string or as {"__type": "AddedToken", "content": ...}.
function tokenName(config: Record<string, unknown>, ...keys: string[]): string | undefined {
  for (const key of keys) {
    const v = config[key];
    if (typeof v === 'string' && v) return v;
    if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  }
  return undefined;
}

export class TextTokenizer {
  private readonly tok: Tokenizer;
  readonly padId: number;
  readonly eosId: number | undefined;
  readonly padLeft: boolean;
  readonly modelMaxLength: number;

  constructor(json: unknown, config: Record<string, unknown>, file: string) {
    try {
      this.tok = new Tokenizer(json as object, config);
    } catch (e) {
      throw new ClipDecoderError('MODEL_INVALID', `${file}: not a usable tokenizer (${(e as Error).message})`, file, { cause: e });
    }
    const eos = tokenName(config, 'eos_token');
    this.eosId = eos !== undefined ? this.tok.token_to_id(eos) : undefined;
    const pad = tokenName(config, 'pad_token', 'eos_token');
    this.padId = (pad !== undefined ? this.tok.token_to_id(pad) : undefined) ?? 0;
    this.padLeft = config.padding_side === 'left';
    this.modelMaxLength = typeof config.model_max_length === 'number' ? config.model_max_length : Infinity;
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** Ids of one text with its special tokens, untruncated. */
  encode(text: string): number[] {
    return this.tok.encode(text).ids;
  }

  encodeBatch(texts: readonly string[], options: { padding: 'longest' | 'max_length'; maxLength: number }): TokenBatch {
    const max = Math.min(options.maxLength, this.modelMaxLength);
    const rows = texts.map((t) => this.tok.encode(t).ids.slice(0, max));
    const length = options.padding === 'max_length' ? max : Math.max(1, ...rows.map((r) => r.length));
    const ids = new BigInt64Array(texts.length * length).fill(BigInt(this.padId));
    const mask = new BigInt64Array(texts.length * length);
    rows.forEach((r, i) => {
      const start = i * length + (this.padLeft ? length - r.length : 0);
      for (let j = 0; j < r.length; j++) {
        ids[start + j] = BigInt(r[j]!);
        mask[start + j] = 1n;
      }
    });
    return { ids, mask, length };
  }
}
