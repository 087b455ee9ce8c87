// Growing float32 .npy files (NumPy format 1.0, https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html)
// that are valid at every moment: rows are appended after the data, then the header's row count is rewritten
// in place. The header has a fixed size (space padding), so it never moves; the count in it is the commit
// point: bytes past it (a crash between the two writes) are cut off when the file is opened again.
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync } from 'node:fs';
import { ClipDecoderError } from '../errors.ts';
import { writeAll } from '../util/fs.ts';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93NUMPY v1.0
/** Whole header: magic (8) + length (2) + dict; a multiple of 64 as the format asks, room for any shape. */
export const HEADER_BYTES = 128;

export function npyHeader(shape: readonly number[]): Buffer {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const len = HEADER_BYTES - MAGIC.length - 2;
  if (dict.length + 1 > len) throw new ClipDecoderError('INPUT_INVALID', `npy shape (${dims}) does not fit the header`);
  const h = Buffer.alloc(HEADER_BYTES, 0x20);
  MAGIC.copy(h, 0);
  h.writeUInt16LE(len, MAGIC.length);
  h.write(dict, MAGIC.length + 2, 'latin1');
  h[HEADER_BYTES - 1] = 0x0a;
  return h;
}

/** The shape in a header this module wrote; undefined for anything else. */
export function parseNpyHeader(h: Buffer): number[] | undefined {
  if (h.length < HEADER_BYTES || !h.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const m = /'descr': '<f4', 'fortran_order': False, 'shape': \(([\d, ]*)\)/.exec(h.toString('latin1', 10, HEADER_BYTES));
  return m
    ? m[1]!
        .split(',')
        .filter((s) => s.trim() !== '')
        .map(Number)
    : undefined;
}

/** A float32 .npy file of rows of `rowShape`, opened for appending (created empty if absent). */
export class NpyAppender {
  readonly path: string;
  readonly rowShape: readonly number[];
  readonly rowFloats: number;
  private fd: number;
  /** Rows counted in the header, and rows written (≥ n until commit). */
  private n: number;
  private written: number;

  private constructor(path: string, rowShape: readonly number[], fd: number, n: number) {
    this.path = path;
    this.rowShape = rowShape;
    this.rowFloats = rowShape.reduce((a, b) => a * b, 1);
    this.fd = fd;
    this.n = this.written = n;
  }

  static open(path: string, rowShape: readonly number[]): NpyAppender {
    if (!existsSync(path)) {
      const fd = openSync(path, 'w+');
      writeAll(fd, npyHeader([0, ...rowShape]).subarray(0, HEADER_BYTES), 0);
      fsyncSync(fd);
      return new NpyAppender(path, rowShape, fd, 0);
    }
    const fd = openSync(path, 'r+');
    const h = Buffer.alloc(HEADER_BYTES);
    readSync(fd, h, 0, HEADER_BYTES, 0);
    const shape = parseNpyHeader(h);
    if (!shape || shape.length !== rowShape.length + 1 || shape.slice(1).some((d, i) => d !== rowShape[i])) {
      closeSync(fd);
      throw new ClipDecoderError(
        'RESULTS_MISMATCH',
        `${path}: not a float32 .npy of rows [${rowShape.join(', ')}] as this run writes (${shape ? `shape (${shape.join(', ')})` : 'unreadable header'}); use another --out folder or --force`,
        path,
      );
    }
    const a = new NpyAppender(path, rowShape, fd, shape[0]!);
    // Rows past the committed count are a crash's leftovers.
    if (fstatSync(fd).size !== a.byteEnd(a.n)) ftruncateSync(fd, a.byteEnd(a.n));
    return a;
  }

  get rows(): number {
    return this.n;
  }

  private byteEnd(rows: number): number {
    return HEADER_BYTES + rows * this.rowFloats * 4;
  }

  /** Writes rows after the data; they count once commit() has rewritten the header. */
  write(data: Float32Array): void {
    if (data.length % this.rowFloats !== 0)
      throw new ClipDecoderError('INPUT_INVALID', `${this.path}: ${data.length} values is not whole rows`);
    writeAll(this.fd, Buffer.from(data.buffer, data.byteOffset, data.byteLength), this.byteEnd(this.written));
    this.written += data.length / this.rowFloats;
  }

  /** fsyncs the rows written so far (call before committing anything that refers to them). */
  flush(): void {
    fsyncSync(this.fd);
  }

  /** Counts `rows` rows (default: all written) in the header, cutting off any past them, and fsyncs. */
  commit(rows = this.written): void {
    this.n = this.written = rows;
    writeAll(this.fd, npyHeader([rows, ...this.rowShape]).subarray(0, HEADER_BYTES), 0);
    if (fstatSync(this.fd).size !== this.byteEnd(rows)) ftruncateSync(this.fd, this.byteEnd(rows));
    fsyncSync(this.fd);
  }

  close(): void {
    closeSync(this.fd);
  }
}
