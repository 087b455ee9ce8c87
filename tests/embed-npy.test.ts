// `embed DIR --out EMB/`: .npy shards + JSONL metadata in clip-retrieval's layout, read back with numpy
// (Debian's python3-numpy: required, never skipped) and compared with the library's own embeddings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ClipModel } from '../src/clip/model.ts';
import { l2normalizeRows } from '../src/clip/prompts.ts';
import { DEFAULT_MODEL } from '../src/tagger/defaults.ts';

const PYTHON = '/usr/bin/python3';
// The bundled model's shapes: embedding width E, T patch tokens of width C.
const {
  embedDim: E,
  numTokens: T,
  tokenDim: C,
} = await (async () => {
  const m = await ClipModel.load(DEFAULT_MODEL, { threads: 1 });
  const dims = { embedDim: m.embedDim, numTokens: m.numTokens, tokenDim: m.tokenDim };
  await m.dispose();
  return dims;
})();

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/clip-decoder.js', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Shard {
  emb: { shape: number[]; dtype: string; data: number[][] };
  tokens?: { shape: number[]; dtype: string; data: number[] };
  meta: { image_path: string; size: number; mtime_ns: string }[];
}

/** Every shard of EMB/ as numpy loads it (np.load, the reader clip-retrieval's users have). */
function numpyShards(emb: string): Shard[] {
  const script = `
import json, os, sys
try:
    import numpy as np
except ImportError:
    sys.exit("numpy is not installed for ${PYTHON}: apt-get install -y python3-numpy")
d = sys.argv[1]
out = []
k = 0
while os.path.exists(os.path.join(d, "img_emb", f"img_emb_{k}.npy")):
    e = np.load(os.path.join(d, "img_emb", f"img_emb_{k}.npy"))
    s = {"emb": {"shape": list(e.shape), "dtype": str(e.dtype), "data": e.tolist()}}
    t = os.path.join(d, "patch_tokens", f"patch_tokens_{k}.npy")
    if os.path.exists(t):
        a = np.load(t)
        s["tokens"] = {"shape": list(a.shape), "dtype": str(a.dtype), "data": a.reshape(-1).tolist()}
    with open(os.path.join(d, "metadata", f"metadata_{k}.jsonl"), encoding="utf-8") as f:
        s["meta"] = [json.loads(l) for l in f]
    out.append(s)
    k += 1
print(json.dumps(out))
`;
  assert.ok(existsSync(PYTHON), `${PYTHON} is missing: this test needs Debian's python3 with numpy (apt-get install -y python3-numpy)`);
  const r = spawnSync(PYTHON, ['-c', script, emb], { encoding: 'utf8', maxBuffer: 256 << 20 });
  assert.equal(r.status, 0, `numpy could not read ${emb}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Shard[];
}

async function makeImages(dir: string, n: number): Promise<string[]> {
  mkdirSync(join(dir, 'sub dir', 'ñandú'), { recursive: true });
  const names = ['a red.png', 'sub dir/b.jpg', 'sub dir/ñandú/c 🐦.webp', 'd\nnewline.png'];
  for (let i = names.length; i < n; i++) names.push(`sub dir/e-${String(i).padStart(4, '0')}.png`);
  const files: string[] = [];
  for (const [i, name] of names.slice(0, n).entries()) {
    const img = sharp({ create: { width: 36, height: 28, channels: 3, background: { r: (i * 70) % 256, g: (i * 30) % 256, b: 200 } } });
    const file = join(dir, name);
    await (name.endsWith('.jpg') ? img.jpeg() : name.endsWith('.webp') ? img.webp() : img.png()).toFile(file);
    files.push(file);
  }
  return files;
}

/** The library's embeddings (L2-normalised, as embed writes them) and tokens, by path. */
async function libraryValues(files: string[]): Promise<Map<string, { emb: Float32Array; tokens: Float32Array }>> {
  const model = await ClipModel.load(DEFAULT_MODEL, { threads: 1 });
  const out = new Map<string, { emb: Float32Array; tokens: Float32Array }>();
  try {
    for await (const r of model.encodeImages(files)) {
      if (r.error) throw r.error;
      out.set(files[r.index]!, { emb: l2normalizeRows(r.imageEmbed.slice(), model.embedDim), tokens: r.tokens });
    }
  } finally {
    await model.dispose();
  }
  return out;
}

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assert.equal(a.length, b.length, what);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  assert.ok(worst <= 1e-5, `${what}: max |numpy - library| = ${worst}`);
}

test('embed --out: float32 .npy shards numpy reads, values equal to the library’s, metadata row by row', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'embed-npy-'));
  const files = await makeImages(join(dir, 'photos'), 5);
  const emb = join(dir, 'EMB');
  const r = cli('embed', join(dir, 'photos'), '--out', emb, '--tokens', '--shard-size', '2');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /5 embedded, 0 skipped .*, 0 failed/);
  assert.deepEqual(readdirSync(join(emb, 'img_emb')).sort(), ['img_emb_0.npy', 'img_emb_1.npy', 'img_emb_2.npy']);
  assert.deepEqual(readdirSync(join(emb, 'metadata')).sort(), ['metadata_0.jsonl', 'metadata_1.jsonl', 'metadata_2.jsonl']);
  const shards = numpyShards(emb);
  assert.deepEqual(
    shards.map((s) => s.emb.shape),
    [
      [2, E],
      [2, E],
      [1, E],
    ],
  );
  assert.deepEqual(
    shards.map((s) => s.tokens!.shape),
    [
      [2, T, C],
      [2, T, C],
      [1, T, C],
    ],
  );
  for (const s of shards) assert.equal(s.emb.dtype, 'float32');
  const lib = await libraryValues(files);
  const seen: string[] = [];
  for (const s of shards) {
    assert.equal(s.meta.length, s.emb.shape[0]);
    s.meta.forEach((m, i) => {
      seen.push(m.image_path);
      const want = lib.get(m.image_path)!;
      assert.ok(want, `metadata names ${m.image_path}`);
      assertClose(s.emb.data[i]!, want.emb, `${m.image_path} embedding`);
      assertClose(s.tokens!.data.slice(i * T * C, (i + 1) * T * C), want.tokens, `${m.image_path} tokens`);
    });
  }
  assert.deepEqual(seen.sort(), [...files].sort());

  // Rerun: nothing to do. A changed image: one new row.
  const again = cli('embed', join(dir, 'photos'), '--out', emb, '--tokens', '--shard-size', '2');
  assert.match(again.stderr, /0 embedded, 5 skipped/);
  await sharp({ create: { width: 36, height: 28, channels: 3, background: { r: 0, g: 255, b: 0 } } })
    .png()
    .toFile(files[0]!);
  const changed = cli('embed', join(dir, 'photos'), '--out', emb, '--tokens', '--shard-size', '2');
  assert.match(changed.stderr, /1 embedded, 4 skipped/);
  const after = numpyShards(emb);
  assert.deepEqual(after[2]!.emb.shape, [2, 128]);
  assert.equal(after[2]!.meta[1]!.image_path, files[0]);
  assertClose(after[2]!.emb.data[1]!, (await libraryValues([files[0]!])).get(files[0]!)!.emb, 'the changed image');
});

test('kill -9 mid-run: every shard stays readable by numpy, and the rerun completes exactly the missing rows', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'embed-kill-'));
  const files = await makeImages(join(dir, 'photos'), 240);
  const emb = join(dir, 'EMB');
  const args = ['bin/clip-decoder.js', 'embed', join(dir, 'photos'), '--out', emb, '--shard-size', '50', '--batch-size', '2'];
  const child = spawn(process.execPath, args, { stdio: 'ignore' });
  const rows = () => {
    try {
      return readdirSync(join(emb, 'metadata')).reduce(
        (a, f) => a + readFileSync(join(emb, 'metadata', f), 'utf8').split('\n').length - 1,
        0,
      );
    } catch {
      return 0;
    }
  };
  for (let i = 0; i < 1500 && rows() < 60; i++) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const partial = numpyShards(emb);
  const done = partial.reduce((a, s) => a + s.emb.shape[0]!, 0);
  assert.ok(done >= 50 && done < files.length, `killed mid-run (${done} rows)`);
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const full = numpyShards(emb);
  const paths = full.flatMap((s) => s.meta.map((m) => m.image_path));
  assert.equal(paths.length, files.length, r.stderr);
  assert.deepEqual([...paths].sort(), [...files].sort());
  for (const s of full) assert.equal(s.meta.length, s.emb.shape[0]);
  assert.match(r.stderr, /(\d+) embedded, (\d+) skipped/);
  const [, e, k] = /(\d+) embedded, (\d+) skipped/.exec(r.stderr)!;
  assert.equal(Number(e) + Number(k), files.length);
  assert.ok(Number(k) >= done, 'rows committed before the kill are not redone');
});

test('a folder made otherwise is refused by name; --force starts it anew; embed-image still prints to stdout', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'embed-mismatch-'));
  const files = await makeImages(join(dir, 'photos'), 3);
  const emb = join(dir, 'EMB');
  assert.equal(cli('embed', join(dir, 'photos'), '--out', emb).code, 0);
  const raw = cli('embed', join(dir, 'photos'), '--out', emb, '--no-normalize');
  assert.equal(raw.code, 2);
  assert.match(raw.stderr, /--out .*EMB: holds embeddings made otherwise: normalized true \(this run: false\).*--force/);
  const tok = cli('embed', join(dir, 'photos'), '--out', emb, '--tokens');
  assert.ok(tok.stderr.includes(`patch tokens null (this run: [${T},${C}])`), tok.stderr);
  writeFileSync(join(emb, 'notes.txt'), 'mine');
  const forced = cli('embed', join(dir, 'photos'), '--out', emb, '--no-normalize', '--force');
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stderr, /3 embedded, 0 skipped/);
  assert.equal(readFileSync(join(emb, 'notes.txt'), 'utf8'), 'mine', 'only our shards are removed');
  const s = numpyShards(emb);
  assert.equal(s.length, 1);
  const norm = Math.hypot(...s[0]!.emb.data[0]!);
  assert.ok(Math.abs(norm - 1) > 1e-3, `--no-normalize keeps the model's norm (${norm})`);
  assert.equal(cli('embed', files[0]!).code, 2, '--out is required');
  const img = cli('embed-image', files[0]!, '--json');
  assert.equal(img.code, 0, img.stderr);
  assert.equal((JSON.parse(img.stdout) as { embedding: number[] }).embedding.length, 128);
});
