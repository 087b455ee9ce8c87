import { constants, statSync, writeSync, type Stats } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';

/**
 * Writes a file atomically: the data goes to a temporary sibling, is fsynced, then renamed over the target,
 * so a reader (or a process killed mid-write) never sees a half-written file.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {}); // a folder in the way, say: leave no stray temporary behind
    throw e;
  }
}

/** Image files larger than this are refused unless the caller raises the limit (a photo is rarely 50 MB). */
export const DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024;

/** What a path is, for messages about paths that are not regular files. */
export function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'of an unknown file type';
}

/**
 * Reads a regular file of at most `maxBytes` bytes. A FIFO, device or socket is refused without blocking
 * (opened non-blocking, checked with fstat before any read), and a file over the limit, or one that grows past
 * it while being read (/dev/zero-like), is refused without reading more than maxBytes + 1 bytes.
 * Throws FILE_NOT_REGULAR / FILE_TOO_LARGE naming the path; other I/O errors are rethrown as they are.
 */
export async function readRegularFile(path: string, maxBytes: number = DEFAULT_MAX_FILE_BYTES): Promise<Buffer> {
  // O_NONBLOCK: opening a FIFO without a writer would otherwise block a libuv thread forever.
  const fh = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    const st = await fh.stat();
    if (!st.isFile())
      throw new ClipDecoderError('FILE_NOT_REGULAR', `${path}: ${fileKind(st)}, not a regular file: only regular files are read`, path);
    if (st.size > maxBytes) throw tooLarge(path, `${st.size} bytes`, maxBytes);
    // One byte more than fstat said, so a file that grew is noticed; grown again up to the limit if it did.
    let buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        if (n > maxBytes) throw tooLarge(path, `more than ${maxBytes} bytes`, maxBytes);
        const bigger = Buffer.alloc(Math.min(buf.length * 2, maxBytes + 1));
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}

function tooLarge(path: string, size: string, maxBytes: number): ClipDecoderError {
  return new ClipDecoderError(
    'FILE_TOO_LARGE',
    `${path}: ${size} exceeds the file-size limit of ${maxBytes} bytes (raise it with --max-file-bytes or maxFileBytes)`,
    path,
  );
}

/** A file's size and modification time (ns, as a decimal string: exact, unlike a float of ms); undefined if it cannot be stat'ed. */
export function statStamp(path: string): { size: number; mtimeNs: string } | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return { size: Number(st.size), mtimeNs: String(st.mtimeNs) };
  } catch {
    return undefined;
  }
}

/**
 * Writes all of `data` to `fd`, looping over short writes (writeSync may write fewer bytes than asked), at
 * `position` or, without one, at the file's current offset.
 */
export function writeAll(fd: number, data: string | Uint8Array, position?: number): void {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off, position === undefined ? null : position + off);
}
