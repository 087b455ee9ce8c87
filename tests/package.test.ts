// The published package, as another project gets it: `npm pack` (which builds dist/ through prepare), the
// tarball installed into an empty project with npm, from the local npm cache where it can (the registry for the
// rest: an abbreviated cached packument does not serve --offline), then imported from
// plain Node (no tsx) and run through its installed `clip-decoder` bin; its declarations type-check a
// consumer. The installed package must answer exactly what the sources answer in this process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Tagger } from '../src/tagger/tagger.ts';
import { notoSvg, renderPng } from './helpers/images.ts';

const repo = resolve(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'clip-decoder-pack-'));
const project = join(work, 'consumer');
const image = join(work, 'pizza.png');
writeFileSync(image, renderPng(notoSvg('pizza'), 200));
const LABELS = ['food', 'animal', 'vehicle', 'music'];
// Skips onnxruntime-node's postinstall (it would fetch CUDA libraries from NuGet) on npm versions without allowScripts.
const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_update_notifier: 'false' };

function run(cmd: string, args: string[], options: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, timeout: 180_000, ...options });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return String(r.stdout);
}

test.after(() => rmSync(work, { recursive: true, force: true }));

test('npm pack → install into an empty project → plain Node import, bin and declarations', async (t) => {
  const t0 = performance.now();
  const packed = JSON.parse(run('npm', ['pack', '--pack-destination', work, '--json', '--silent'], { cwd: repo })) as {
    filename: string;
    files: { path: string }[];
  }[];
  const files = packed[0]!.files.map((f) => f.path);
  const tarball = join(work, packed[0]!.filename);
  for (const f of [
    'dist/index.js',
    'dist/index.d.ts',
    'dist/cli/main.js',
    'dist/tagger/tagger.d.ts',
    'bin/clip-decoder.js',
    'models/pico-clip/onnx/vision_model.onnx',
    'models/pico-clip-decoder/config.json',
    'dist/data/nus-wide/Concepts81.txt',
    'dist/data/nus-wide/TagList1k.txt',
    'package.json',
    'README.md',
  ]) {
    assert.ok(files.includes(f), `${f} missing from the tarball`);
  }
  const stray = files.filter((f) => /^(src|tests|tools|bench|examples|docs)\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')));
  assert.deepEqual(stray, [], 'sources, tests, tools or bench in the tarball');
  const tPack = performance.now();

  // The runtime closure of our own lockfile (every non-dev entry) pins the dependencies to the versions
  // this checkout installed, so the consumer gets exactly what the tests ran.
  const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; link?: boolean }>;
  };
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
    version: string;
    license: string;
    dependencies: object;
    bin: object;
    engines: object;
  };
  const spec = `file:../${packed[0]!.filename}`;
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  const packages: Record<string, unknown> = {
    '': { name: 'consumer', dependencies: { 'clip-decoder': spec } },
    'node_modules/clip-decoder': {
      version: pkg.version,
      resolved: spec,
      integrity,
      license: pkg.license,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
      engines: pkg.engines,
    },
  };
  for (const [k, v] of Object.entries(lock.packages)) if (k && !v.dev && !v.link) packages[k] = v;
  mkdirSync(project);
  const allowScripts = { 'onnxruntime-node': false, protobufjs: true };
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { 'clip-decoder': spec }, allowScripts }),
  );
  writeFileSync(join(project, 'package-lock.json'), JSON.stringify({ name: 'consumer', lockfileVersion: 3, requires: true, packages }));
  const install = spawnSync('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], {
    cwd: project,
    encoding: 'utf8',
    env,
    timeout: 180_000,
  });
  assert.equal(install.status, 0, install.stderr);
  // No word about unknown config or unreviewed install scripts. (cookie@2, under fastify's light-my-request,
  // declares node >= 22 and draws an EBADENGINE warning on Node 20: a dependency matter, not the package's.)
  assert.doesNotMatch(install.stderr, /Unknown .*config|install-scripts/i, install.stderr);
  const tInstall = performance.now();

  // What the sources answer, in this process.
  const tagger = await Tagger.load();
  const expected = await tagger.tag(image, LABELS);
  await tagger.dispose();
  const want = Object.fromEntries(expected.labels.map((l) => [l.label, l.probability]));

  await t.test('plain Node imports the package and tags with the bundled model', () => {
    const script = `import { Tagger, DEFAULT_MODEL, ClipDecoderError } from 'clip-decoder';
const t = await Tagger.load();
const r = await t.tag(${JSON.stringify(image)}, ${JSON.stringify(LABELS)});
await t.dispose();
console.log(JSON.stringify({ model: DEFAULT_MODEL, error: typeof ClipDecoderError, labels: Object.fromEntries(r.labels.map((l) => [l.label, l.probability])) }));`;
    writeFileSync(join(project, 'use.mjs'), script);
    const out = JSON.parse(run(process.execPath, ['use.mjs'], { cwd: project })) as {
      model: string;
      error: string;
      labels: Record<string, number>;
    };
    assert.equal(out.model, join(project, 'node_modules/clip-decoder/models/pico-clip'));
    assert.equal(out.error, 'function');
    for (const l of LABELS) assert.ok(Math.abs(out.labels[l]! - want[l]!) < 1e-6, `${l}: ${out.labels[l]} vs ${want[l]}`);
  });

  await t.test('the installed bin tags an image with the bundled model', () => {
    const bin = join(project, 'node_modules/.bin/clip-decoder');
    assert.ok(existsSync(bin));
    const line = JSON.parse(run(bin, ['tag', image, '--labels', LABELS.join(','), '--format', 'jsonl'], { cwd: project }).trim()) as {
      labels: Record<string, number>;
    };
    for (const l of LABELS) assert.ok(Math.abs(line.labels[l]! - want[l]!) < 1e-5, `${l}: ${line.labels[l]} vs ${want[l]}`);
    const help = spawnSync(bin, ['--help'], { cwd: project, encoding: 'utf8', env });
    assert.equal(help.status, 0);
    assert.match(help.stdout, /Usage: clip-decoder/);
  });

  await t.test('the declarations type-check a TypeScript consumer (and are not `any`)', () => {
    writeFileSync(
      join(project, 'use.ts'),
      `import { Tagger, type TagResult } from 'clip-decoder';
const t: Tagger = await Tagger.load({ threads: 1 });
const r: TagResult = await t.tag('x.png', ['a']);
const p: number = r.labels[0]!.probability;
// Through tagger.d.ts's own import of the model's declarations:
const e: number = t.model.embedDim;
// @ts-expect-error: a wrong option type must be an error, which it is not if the types resolved to any
await Tagger.load({ threads: 'one' });
export { p, e };
`,
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: [],
        },
        files: ['use.ts'],
      }),
    );
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout);
    assert.ok(existsSync(join(project, 'node_modules/clip-decoder/dist/index.d.ts')));
  });
  const tEnd = performance.now();
  t.diagnostic(
    `pack ${((tPack - t0) / 1000).toFixed(1)} s, install ${((tInstall - tPack) / 1000).toFixed(1)} s, checks ${((tEnd - tInstall) / 1000).toFixed(1)} s`,
  );
});
