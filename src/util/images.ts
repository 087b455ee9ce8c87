// Expands the paths a user gives (files and folders, walked recursively) into image files. Only regular files
// are taken: a FIFO would block the reader forever and a device never ends, so those are skipped with a warning
// inside folders and refused when named. A path that yields nothing to tag is a failed input, with the reason.
import { lstatSync, readdirSync, statSync, type Dirent, type Stats } from 'node:fs';
import { join, extname } from 'node:path';
import { fileKind } from './fs.ts';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.svg', '.avif', '.tif', '.tiff']);

export interface InputProblem {
  path: string;
  reason: string;
}

export interface ExpandedInputs {
  files: string[];
  /** Paths that cannot be used (missing, not a regular file, a folder with no image in it), with the reason. */
  missing: InputProblem[];
  /** Entries skipped inside folders (FIFOs, devices, sockets, links to folders), with the reason: warnings. */
  skipped: InputProblem[];
}

/** A name as bytes are shown when they are not UTF-8: valid UTF-8 runs as they are, other bytes as \xNN. */
function showBytes(name: Buffer): string {
  let out = '';
  for (const b of name) out += b < 0x80 ? String.fromCharCode(b) : `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

function isUtf8(name: Buffer): boolean {
  return Buffer.from(name.toString('utf8'), 'utf8').equals(name);
}

const SUPPORTED = [...IMAGE_EXTENSIONS].join(', ');

export function expandImageInputs(paths: readonly string[]): ExpandedInputs {
  const files: string[] = [];
  const missing: InputProblem[] = [];
  const skipped: InputProblem[] = [];
  // Per walked root: how many other files were passed over, by extension, for the "nothing to tag" message.
  let others = new Map<string, number>();

  const consider = (p: string, name: string, st: Pick<Stats, 'isFile' | 'isDirectory'> | Dirent, walk: (d: string) => void) => {
    if (st.isDirectory()) walk(p);
    else if (IMAGE_EXTENSIONS.has(extname(name).toLowerCase())) files.push(p);
    else {
      const ext = extname(name).toLowerCase() || '(no extension)';
      others.set(ext, (others.get(ext) ?? 0) + 1);
    }
  };

  const walk = (dir: string) => {
    let entries: Dirent<Buffer>[];
    try {
      // Buffer names: a name that is not UTF-8 is seen as it is, not turned into one that does not exist.
      entries = readdirSync(dir, { withFileTypes: true, encoding: 'buffer' });
    } catch (e) {
      missing.push({ path: dir, reason: `cannot list the folder (${(e as NodeJS.ErrnoException).code ?? String(e)})` });
      return;
    }
    const named = entries.map((e) => ({ e, name: e.name.toString('utf8') }));
    named.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : Buffer.compare(a.e.name, b.e.name)));
    for (const { e, name } of named) {
      const p = join(dir, name);
      if (!isUtf8(e.name)) {
        if (e.isDirectory() || IMAGE_EXTENSIONS.has(extname(e.name.toString('latin1')).toLowerCase())) {
          missing.push({
            path: join(dir, showBytes(e.name)),
            reason: 'the name is not valid UTF-8, so it cannot be opened by name: rename it (for example with convmv)',
          });
        }
        continue;
      }
      if (e.isDirectory() || e.isFile()) {
        consider(p, name, e, walk);
        continue;
      }
      let st: Stats;
      try {
        st = e.isSymbolicLink() ? statSync(p) : lstatSync(p); // lstat: file systems that report no type
      } catch (err) {
        if (IMAGE_EXTENSIONS.has(extname(name).toLowerCase()))
          missing.push({ path: p, reason: `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})` });
        continue;
      }
      if (st.isFile()) consider(p, name, st, walk);
      // Links to folders are not followed: a link to an ancestor would walk forever.
      else if (st.isDirectory())
        skipped.push({ path: p, reason: e.isSymbolicLink() ? 'a symbolic link to a folder: not followed' : 'a folder' });
      else skipped.push({ path: p, reason: `${fileKind(st)}, not a regular file: skipped` });
    }
  };

  for (const p of paths) {
    let st: Stats;
    try {
      st = statSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const reason =
        code !== 'ENOENT'
          ? `cannot be read (${code ?? String(e)})`
          : p.includes('\uFFFD')
            ? 'no such file or folder (the name holds bytes that are not UTF-8, shown as \uFFFD; such a name cannot be passed on the command line: rename it, or name its folder instead)'
            : 'no such file or folder';
      missing.push({ path: p, reason });
      continue;
    }
    if (st.isDirectory()) {
      others = new Map();
      const before = files.length;
      const problems = missing.length + skipped.length;
      walk(p);
      if (files.length === before && missing.length + skipped.length === problems) {
        const n = [...others.values()].reduce((a, b) => a + b, 0);
        const what =
          n === 0 ? 'the folder holds no files' : `${n} file${n === 1 ? '' : 's'} of other types (${[...others.keys()].sort().join(', ')})`;
        missing.push({ path: p, reason: `no images to tag: ${what}; supported: ${SUPPORTED}` });
      } else if (files.length === before) {
        missing.push({ path: p, reason: 'no images to tag (see the messages above)' });
      }
    } else if (st.isFile()) {
      // A file named explicitly is taken whatever its extension: the decoder decides whether it is an image.
      files.push(p);
    } else {
      missing.push({ path: p, reason: `${fileKind(st)}, not a regular file: only regular files are read` });
    }
  }
  return { files, missing, skipped };
}
