// What a library run (tag --out, embed --out) has to do: each image is stat'ed once; those already done from
// the file as it is now (same size and mtime) are skipped, the rest are to do, the unreadable are failures.
import { resolve } from 'node:path';
import { statStamp } from '../util/fs.ts';

export interface Stamp {
  size: number;
  mtimeNs: string;
}

export interface PlannedImage {
  /** As given (for messages), and absolute (what records store). */
  file: string;
  path: string;
  stamp: Stamp;
}

export interface LibrarySummary {
  /** Images processed in this run, skipped as already done, and failed (each named in `failures`). */
  done: number;
  skipped: number;
  failed: number;
  failures: { path: string; message: string }[];
}

export function planImages(files: readonly string[], isDone: (path: string, stamp: Stamp) => boolean, force = false) {
  const todo: PlannedImage[] = [];
  const summary: LibrarySummary = { done: 0, skipped: 0, failed: 0, failures: [] };
  for (const file of files) {
    const path = resolve(file);
    const stamp = statStamp(path);
    if (!stamp) {
      summary.failed++;
      summary.failures.push({ path: file, message: `${file}: cannot be read (it vanished or is not accessible)` });
    } else if (!force && isDone(path, stamp)) summary.skipped++;
    else todo.push({ file, path, stamp });
  }
  return { todo, summary };
}
