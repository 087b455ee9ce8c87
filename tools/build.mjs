// `npm run build`: compiles src/ to dist/ (ES modules + .d.ts) with tsconfig.build.json, failing on any type
// error, then copies the data files the code reads next to itself at run time (the NUS-WIDE label lists, the in-browser page's scripts).
// dist/ is removed first so a deleted source file leaves no stale module behind.
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (r.status !== 0) {
  rmSync(dist, { recursive: true, force: true });
  process.exit(r.status ?? 1);
}
cpSync(join(root, 'src/data/nus-wide'), join(dist, 'data/nus-wide'), { recursive: true });
cpSync(join(root, 'src/web/assets'), join(dist, 'web/assets'), { recursive: true });
