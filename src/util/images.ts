// Expands the paths a user gives (files and folders, walked recursively) into image files.
import { readdirSync, statSync } from 'node:fs';
import { join, extname } from 'node:path';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.svg', '.avif', '.tif', '.tiff']);

export interface ExpandedInputs {
  files: string[];
  /** Paths that do not exist or cannot be listed, with the reason. */
  missing: { path: string; reason: string }[];
}

export function expandImageInputs(paths: readonly string[]): ExpandedInputs {
  const files: string[] = [];
  const missing: ExpandedInputs['missing'] = [];
  const walk = (dir: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      missing.push({ path: dir, reason: (e as NodeJS.ErrnoException).code ?? String(e) });
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) files.push(p);
    }
  };
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      missing.push({ path: p, reason: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or folder' : String(e) });
      continue;
    }
    // A file named explicitly is taken whatever its extension: the decoder decides whether it is an image.
    if (st.isDirectory()) walk(p);
    else files.push(p);
  }
  return { files, missing };
}
