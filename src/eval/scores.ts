// Score files: a model's scores for images × labels, read by `clip-decoder eval`. Two formats:
//
// JSONL (readable, any tool can write it): one image a line, {"id": "1f436_noto", "scores": {"dog": 0.93, ...}};
//   every line scores the same labels.
// Binary (compact, fast; what clip-decoder writes): the 8 bytes "CDSCORE1", a uint32 little-endian byte length H,
//   H bytes of UTF-8 JSON {"ids": [...], "labels": [...]} (padded with spaces so the data starts at a multiple
//   of 4), then float32 little-endian scores [ids × labels] row-major.
// Scores may be probabilities or logits: only their order per label (AP) and per image (top-K) matters.
import { readFileSync } from 'node:fs';
import { ClipDecoderError } from '../errors.ts';
import { writeFileAtomic } from '../util/fs.ts';

export interface ScoreTable {
  ids: string[];
  labels: string[];
  scores: Float32Array; // [ids, labels]
}

const MAGIC = 'CDSCORE1';

export function encodeScores(table: ScoreTable): Uint8Array {
  const { ids, labels, scores } = table;
  if (scores.length !== ids.length * labels.length) {
    throw new ClipDecoderError(
      'INPUT_INVALID',
      `scores hold ${scores.length} values, expected ${ids.length} ids × ${labels.length} labels`,
      'scores',
    );
  }
  let header = Buffer.from(JSON.stringify({ ids, labels }), 'utf8');
  const pad = (4 - ((MAGIC.length + 4 + header.length) % 4)) % 4;
  header = Buffer.concat([header, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.alloc(MAGIC.length + 4 + header.length + scores.length * 4);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt32LE(header.length, MAGIC.length);
  header.copy(out, MAGIC.length + 4);
  const data = new Float32Array(out.buffer, out.byteOffset + MAGIC.length + 4 + header.length, scores.length);
  data.set(scores); // little-endian on every platform Node supports
  return out;
}

/** Writes a score table: JSONL when the path ends in .jsonl, the binary format otherwise. */
export async function writeScoresFile(path: string, table: ScoreTable): Promise<void> {
  if (path.toLowerCase().endsWith('.jsonl')) {
    const L = table.labels.length;
    const lines = table.ids.map((id, i) => {
      const scores: Record<string, number> = {};
      table.labels.forEach((l, j) => (scores[l] = table.scores[i * L + j]!));
      return JSON.stringify({ id, scores });
    });
    await writeFileAtomic(path, `${lines.join('\n')}\n`);
  } else {
    await writeFileAtomic(path, encodeScores(table));
  }
}

function decodeBinary(path: string, buf: Buffer): ScoreTable {
  const bad = (why: string) => new ClipDecoderError('INPUT_INVALID', `${path}: not a valid binary score file (${why})`, path);
  if (buf.length < MAGIC.length + 4) throw bad('too short');
  const h = buf.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4 + h;
  if (start > buf.length) throw bad('header longer than the file');
  let header: { ids?: unknown; labels?: unknown };
  try {
    header = JSON.parse(buf.subarray(MAGIC.length + 4, start).toString('utf8'));
  } catch (e) {
    throw bad(`header is not JSON: ${(e as Error).message}`);
  }
  const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
  if (!isStrings(header.ids) || !isStrings(header.labels)) throw bad('header needs "ids" and "labels" lists of strings');
  const n = header.ids.length * header.labels.length;
  if (buf.length - start !== n * 4)
    throw bad(`${buf.length - start} data bytes, expected ${n * 4} for ${header.ids.length} ids × ${header.labels.length} labels`);
  // Copy into an aligned array (the file buffer's offset may not be a multiple of 4).
  const scores = new Float32Array(n);
  new Uint8Array(scores.buffer).set(buf.subarray(start));
  const at = scores.findIndex((v) => !Number.isFinite(v));
  if (at >= 0) {
    const L = header.labels.length;
    const id = header.ids[Math.floor(at / L)]!;
    const label = header.labels[at % L]!;
    throw new ClipDecoderError(
      'INPUT_INVALID',
      `${path}: the score of id "${id}" for label "${label}" is not a finite number (${scores[at]})`,
      path,
    );
  }
  return { ids: header.ids, labels: header.labels, scores };
}

function decodeJsonl(path: string, text: string): ScoreTable {
  const problems: string[] = [];
  const ids: string[] = [];
  const rows: Record<string, unknown>[] = [];
  const lines: number[] = [];
  let labels: string[] | undefined;
  const firstLine = new Map<string, number>();
  text.split('\n').forEach((raw, i) => {
    const src = raw.trim();
    if (src === '' || problems.length >= 20) return;
    const at = `${path}:${i + 1}`;
    let o: { id?: unknown; scores?: unknown };
    try {
      o = JSON.parse(src);
    } catch (e) {
      problems.push(`${at}: not valid JSON (${(e as Error).message})`);
      return;
    }
    if (typeof o !== 'object' || o === null || (typeof o.id !== 'string' && typeof o.id !== 'number')) {
      problems.push(`${at}: expected {"id": ..., "scores": {"label": number, ...}}`);
      return;
    }
    const id = String(o.id);
    if (firstLine.has(id)) {
      problems.push(`${at}: duplicate id "${id}" (first on line ${firstLine.get(id)})`);
      return;
    }
    firstLine.set(id, i + 1);
    if (typeof o.scores !== 'object' || o.scores === null || Array.isArray(o.scores)) {
      problems.push(`${at}: "scores" must be an object of label -> number`);
      return;
    }
    const s = o.scores as Record<string, unknown>;
    if (!labels) labels = Object.keys(s);
    ids.push(id);
    rows.push(s);
    lines.push(i + 1);
  });
  const L = labels?.length ?? 0;
  const scores = new Float32Array(ids.length * L);
  rows.forEach((s, i) => {
    if (problems.length >= 20) return;
    const at = `${path}:${lines[i]}`;
    if (Object.keys(s).length !== L) problems.push(`${at}: scores ${Object.keys(s).length} labels, the first line ${L}`);
    labels!.forEach((l, j) => {
      const v = s[l];
      if (typeof v !== 'number' || Number.isNaN(v)) problems.push(`${at}: no numeric score for label "${l}"`);
      // JSON.parse reads 1e999 as Infinity; an infinite score would tie or break every ranking it is in.
      else if (!Number.isFinite(v)) problems.push(`${at}: the score for label "${l}" is not a finite number (${v})`);
      else scores[i * L + j] = v;
    });
  });
  if (problems.length > 0) {
    throw new ClipDecoderError(
      'INPUT_INVALID',
      [
        `${path}: ${problems.length === 1 ? '1 problem' : `${problems.length}+ problems`}:`,
        ...problems.slice(0, 20).map((p) => `  ${p}`),
      ].join('\n'),
      path,
    );
  }
  return { ids, labels: labels ?? [], scores };
}

/** Reads a score file in either format (recognised by its first bytes). */
export function readScoresFile(path: string): ScoreTable {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new ClipDecoderError('INPUT_INVALID', `score file ${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? e})`, path);
  }
  if (buf.subarray(0, MAGIC.length).toString('latin1') === MAGIC) return decodeBinary(path, buf);
  return decodeJsonl(path, buf.toString('utf8'));
}
