// The results file of `tag DIR --out results.jsonl`: one JSON line per image, appended as each is done.
//
//   {"path","size","mtimeNs","model","head","labelSet","probabilities":{label: p},"sha256"}
//
// Safety: each record is one write() of a whole line to a file opened for appending, so a process killed at
// any moment (kill -9) leaves every earlier line whole; at worst a torn final line (power cut), which the next
// open cuts off. fsync runs at most once a second and on close: a kill loses nothing written, a power cut at
// most the last second. "sha256" is the digest of the line without it, so a damaged line is seen, reported and
// its image tagged again. The last record of a path wins. One file holds one (model, head, label set): records
// of another are refused by name (RESULTS_MISMATCH), never mixed in.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync } from 'node:fs';
import { ClipDecoderError } from '../errors.ts';
import { writeAll } from '../util/fs.ts';

/** What every record of one results file shares. */
export interface ResultIdentity {
  model: string;
  head: string;
  labelSet: string;
}

export interface ResultRecord extends ResultIdentity {
  /** Absolute path of the image. */
  path: string;
  size: number;
  /** Modification time in nanoseconds, as a decimal string. */
  mtimeNs: string;
  probabilities: Record<string, number>;
}

export interface OpenResultsOptions {
  /** Start a new file (truncating the old one) whatever it holds. */
  force?: boolean;
  /** Read only: never create, repair or write the file. */
  readOnly?: boolean;
  /** Called for each damaged line that is ignored. */
  onWarning?: (message: string) => void;
}

const FSYNC_INTERVAL_MS = 1000;
const NAMES = { model: 'model', head: 'head', labelSet: 'label set' } as const;

function digest(body: string): string {
  return createHash('sha256').update(body).digest('hex');
}

/** A record line: the body's JSON with its digest appended as the last field. */
export function recordLine(rec: ResultRecord): string {
  const body = JSON.stringify({
    path: rec.path,
    size: rec.size,
    mtimeNs: rec.mtimeNs,
    model: rec.model,
    head: rec.head,
    labelSet: rec.labelSet,
    probabilities: rec.probabilities,
  });
  return `${body.slice(0, -1)},"sha256":"${digest(body)}"}\n`;
}

type Parsed = { ok: true; rec: ResultRecord } | { ok: false; why: string; foreign?: boolean };

function parseLine(line: string): Parsed {
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { ok: false, why: 'not JSON' };
  }
  if (typeof obj !== 'object' || obj === null || typeof obj.sha256 !== 'string' || typeof obj.path !== 'string')
    return { ok: false, why: 'not a clip-decoder tag record', foreign: true };
  const { sha256, ...rest } = obj;
  if (digest(JSON.stringify(rest)) !== sha256) return { ok: false, why: 'its SHA-256 does not match its content' };
  return { ok: true, rec: rest as unknown as ResultRecord };
}

export class ResultsFile {
  readonly path: string;
  readonly identity: ResultIdentity;
  /** Records read from the file and appended since, by path (the last wins). */
  private readonly done = new Map<string, { size: number; mtimeNs: string }>();
  private fd: number | undefined;
  private lastSync = 0;
  private dirty = false;

  private constructor(path: string, identity: ResultIdentity) {
    this.path = path;
    this.identity = identity;
  }

  /**
   * Opens (or creates) a results file for the given identity. Records of another model, head or label set are
   * refused (RESULTS_MISMATCH) unless `force`, which starts the file anew; a torn final line is cut off.
   */
  static open(path: string, identity: ResultIdentity, options: OpenResultsOptions = {}): ResultsFile {
    const file = new ResultsFile(path, identity);
    if (existsSync(path) && !options.force) file.load(options);
    if (!options.readOnly) {
      try {
        file.fd = openSync(path, options.force ? 'w' : 'a');
      } catch (e) {
        throw new ClipDecoderError(
          'OUTPUT_UNWRITABLE',
          `--out ${path}: cannot open the results file for appending (${(e as NodeJS.ErrnoException).code ?? e})`,
          path,
          { cause: e },
        );
      }
    }
    return file;
  }

  private load(options: OpenResultsOptions): void {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e) {
      throw new ClipDecoderError(
        'OUTPUT_UNWRITABLE',
        `--out ${this.path}: cannot read the results file (${(e as NodeJS.ErrnoException).code ?? e})`,
        this.path,
        { cause: e },
      );
    }
    const lines = text.split('\n');
    const torn = lines.pop()!; // '' after a complete last line; otherwise a line cut short by a crash
    for (const [n, line] of lines.entries()) {
      if (line === '') continue;
      const p = parseLine(line);
      if (!p.ok) {
        if (p.foreign)
          throw new ClipDecoderError(
            'RESULTS_MISMATCH',
            `--out ${this.path}: line ${n + 1} is ${p.why}: this is not a results file of \`clip-decoder tag --out\`; name another file`,
            this.path,
          );
        options.onWarning?.(`${this.path}: line ${n + 1} is damaged (${p.why}): ignored, its image is tagged again`);
        continue;
      }
      const differs = (['model', 'head', 'labelSet'] as const).filter((k) => p.rec[k] !== this.identity[k]);
      if (differs.length > 0) {
        const what = differs.map((k) => `${NAMES[k]} ${p.rec[k]} (this run: ${this.identity[k]})`).join(', ');
        throw new ClipDecoderError(
          'RESULTS_MISMATCH',
          `--out ${this.path}: holds results of another ${differs.map((k) => NAMES[k]).join(' and ')}: ${what}; name a new --out file, or pass --force to start this one anew`,
          this.path,
        );
      }
      this.done.set(p.rec.path, { size: p.rec.size, mtimeNs: p.rec.mtimeNs });
    }
    if (torn !== '' && !options.readOnly) {
      options.onWarning?.(`${this.path}: the last line was cut short (an interrupted run): removed, its image is tagged again`);
      const fd = openSync(this.path, 'r+');
      try {
        ftruncateSync(fd, Buffer.byteLength(text) - Buffer.byteLength(torn));
      } finally {
        closeSync(fd);
      }
    }
  }

  /**
   * The record lines of a results file by image path (the last of a path wins), each checked against its
   * SHA-256 and the identity; a damaged or foreign line is RESULTS_MISMATCH naming the file and line.
   */
  static readLines(path: string, identity: ResultIdentity): Map<string, string> {
    const lines = new Map<string, string>();
    const text = readFileSync(path, 'utf8');
    for (const [n, line] of text.split('\n').entries()) {
      if (line === '') continue;
      const p = parseLine(line);
      const differs = p.ok ? (['model', 'head', 'labelSet'] as const).filter((k) => p.rec[k] !== identity[k]) : [];
      if (!p.ok || differs.length > 0)
        throw new ClipDecoderError(
          'RESULTS_MISMATCH',
          `${path}: line ${n + 1} ${p.ok ? `is a result of another ${differs.map((k) => NAMES[k]).join(' and ')}` : `is ${p.why}`}; rerun the command that made it`,
          path,
        );
      lines.set(p.rec.path, `${line}\n`);
    }
    return lines;
  }

  /** Number of images with a record. */
  get size(): number {
    return this.done.size;
  }

  /** Whether the image has a record made from the file as it is now (same size and mtime). */
  isDone(path: string, stamp: { size: number; mtimeNs: string }): boolean {
    const d = this.done.get(path);
    return d !== undefined && d.size === stamp.size && d.mtimeNs === stamp.mtimeNs;
  }

  /** Appends one record as one write of a whole line. */
  append(rec: Omit<ResultRecord, keyof ResultIdentity>): void {
    if (this.fd === undefined) throw new Error(`${this.path}: opened read-only`);
    const buf = Buffer.from(recordLine({ ...rec, ...this.identity }));
    try {
      writeAll(this.fd, buf);
      this.dirty = true;
      const now = Date.now();
      if (now - this.lastSync >= FSYNC_INTERVAL_MS) {
        fsyncSync(this.fd);
        this.lastSync = now;
        this.dirty = false;
      }
    } catch (e) {
      // A full disk, say: the run stops; what was appended before stays, a torn line is cut off next time.
      throw new ClipDecoderError(
        'OUTPUT_UNWRITABLE',
        `--out ${this.path}: cannot append a record (${(e as NodeJS.ErrnoException).code ?? e})`,
        this.path,
        {
          cause: e,
        },
      );
    }
    this.done.set(rec.path, { size: rec.size, mtimeNs: rec.mtimeNs });
  }

  close(): void {
    if (this.fd === undefined) return;
    if (this.dirty) fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = undefined;
  }
}
