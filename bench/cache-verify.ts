// npm run bench:cache-verify [-- --records N --tokens T --dim C --embed E]
// Cost of the feature cache's integrity checks: reading every record with FeatureCache.read (SHA-256 of key +
// record, finiteness scan) against the same bytes read with a bare readSync + copy, in this run, on the same
// files (warm page cache: the checks' CPU cost, not the disk's). Also the cost of the digest at append time.
// Default shape: ViT-B/32 (49 patch tokens × 768, embed 512), the size of a real CLIP's records.
import { mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FeatureCache, CACHE_FORMAT_VERSION } from '../src/features/cache.ts';
import { Rng } from '../src/nn/rng.ts';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '2000' },
    tokens: { type: 'string', default: '49' },
    dim: { type: 'string', default: '768' },
    embed: { type: 'string', default: '512' },
  },
});
const N = Number(values.records),
  T = Number(values.tokens),
  C = Number(values.dim),
  E = Number(values.embed);
const dir = mkdtempSync(join(tmpdir(), 'bench-cache-verify-'));
const cache = await FeatureCache.open(dir, {
  format: CACHE_FORMAT_VERSION,
  modelFingerprint: 'm',
  datasetFingerprint: 'd',
  modelId: 'bench',
  numTokens: T,
  tokenDim: C,
  embedDim: E,
  keepCls: false,
});
const rng = new Rng(1);
const tokens = Float32Array.from({ length: T * C }, () => rng.normal());
const imageEmbed = Float32Array.from({ length: E }, () => rng.normal());
const t0 = performance.now();
for (let i = 0; i < N; i += 64)
  cache.append(Array.from({ length: Math.min(64, N - i) }, (_, k) => ({ key: `img${i + k}`, tokens, imageEmbed, source: '1:1' })));
const appendMs = performance.now() - t0;
const into = { tokens: new Float32Array(T * C), imageEmbed: new Float32Array(E) };
const bytes = (T * C + E) * 4;
const buf = Buffer.allocUnsafe(bytes);
const fd = openSync(join(dir, 'shard-0000.bin'), 'r');
function bare(): number {
  const t = performance.now();
  for (let i = 0; i < N; i++) {
    readSync(fd, buf, 0, bytes, (i % 4096) * bytes);
    const f = new Float32Array(buf.buffer, buf.byteOffset, T * C + E);
    into.tokens.set(f.subarray(0, T * C));
    into.imageEmbed.set(f.subarray(T * C));
  }
  return performance.now() - t;
}
function verified(): number {
  const t = performance.now();
  for (let i = 0; i < N; i++) cache.read(`img${i}`, into);
  return performance.now() - t;
}
if (N > 4096) throw new Error('bench: at most 4096 records (one shard)');
bare();
verified(); // warm up the page cache and the JIT
const b = Math.min(bare(), bare(), bare()),
  v = Math.min(verified(), verified(), verified());
closeSync(fd);
cache.close();
rmSync(dir, { recursive: true, force: true });
const mb = (N * bytes) / 1e6;
console.log(`feature cache, ${N} records of ${T}×${C}+${E} floats (${(bytes / 1024).toFixed(1)} KiB each, ${mb.toFixed(0)} MB)`);
console.log(`  bare read + copy      ${b.toFixed(1)} ms  (${((b * 1000) / N).toFixed(1)} µs/record)`);
console.log(`  verified read         ${v.toFixed(1)} ms  (${((v * 1000) / N).toFixed(1)} µs/record, ${(mb / (v / 1000)).toFixed(0)} MB/s)`);
console.log(
  `  verification cost     ${(v - b).toFixed(1)} ms  (${(((v - b) * 1000) / N).toFixed(1)} µs/record, ×${(v / b).toFixed(2)} the bare read)`,
);
console.log(`  append (digest+fsync) ${appendMs.toFixed(1)} ms for ${N} records`);
