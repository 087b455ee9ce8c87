// npm run bench:kill9 [-- --kills 20 --seed 1 --images 60 --epochs 20 --checkpoint-steps 4 --keep]
//
// kill -9 at random moments of feature extraction and training (bench/kill9-child.ts: the library call behind
// `clip-decoder train`), each kill followed by a resume of the same command, until the run completes; then the
// feature cache, the last and best checkpoints and the test report are compared byte for byte with an
// uninterrupted run made in this same bench. Per kill it prints how far the process had got (records committed,
// steps done) and where the resume started: the work lost must be at most what came after the last checkpoint
// (an extraction batch in flight; at most --checkpoint-steps training steps). Tiny CLIP fixture: minutes.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildEmojiTags } from '../src/data/emoji/build.ts';
import { FeatureCache } from '../src/features/cache.ts';
import { Rng } from '../src/nn/rng.ts';

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '20' },
    seed: { type: 'string', default: '1' },
    images: { type: 'string', default: '60' },
    epochs: { type: 'string', default: '20' },
    'checkpoint-steps': { type: 'string', default: '4' },
    keep: { type: 'boolean', default: false },
  },
});
const KILLS = Number(values.kills),
  EVERY = Number(values['checkpoint-steps']);
const rng = new Rng(Number(values.seed));
const root = mkdtempSync(join(tmpdir(), 'bench-kill9-'));
const data = join(root, 'emojitags');
await buildEmojiTags({ out: data, size: 32, styles: ['noto', 'twemoji'], limit: Number(values.images) });
const runOpts = (name: string) => ({
  dataset: data,
  model: 'tests/fixtures/tiny-clip',
  cacheDir: join(root, name, 'cache'),
  outDir: join(root, name, 'out'),
  epochs: Number(values.epochs),
  batchSize: 8,
  seed: 3,
  extraViews: 2,
  head: { dModel: 32, heads: 4, ffnDim: 64 },
  trainer: { maxLr: 1e-3, alpha: 0.5 },
  checkpointEverySteps: EVERY,
  resume: true,
});

interface Attempt {
  lines: string[];
  code: number | null;
  killed: boolean;
  ms: number;
  firstWorkMs?: number;
}

/** Runs the child; kills it `delayMs` after its first line of work (extraction or training), unless it ends first. */
function attempt(name: string, delayMs: number | null): Promise<Attempt> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/kill9-child.ts', JSON.stringify(runOpts(name))], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const res: Attempt = { lines: [], code: null, killed: false, ms: 0 };
    let buf = '',
      err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const l of parts) {
        res.lines.push(l);
        if (res.firstWorkMs === undefined && /^(extract|step) /.test(l)) {
          res.firstWorkMs = performance.now() - t0;
          if (delayMs !== null)
            setTimeout(() => {
              res.killed = child.kill('SIGKILL');
            }, delayMs);
        }
      }
    });
    child.on('exit', (code) => {
      res.code = code;
      res.ms = performance.now() - t0;
      if (!res.killed && code !== 0) process.stderr.write(err);
      resolve(res);
    });
  });
}

const last = (lines: string[], kind: string) => {
  for (let i = lines.length - 1; i >= 0; i--) if (lines[i]!.startsWith(`${kind} `)) return Number(lines[i]!.slice(kind.length + 1));
  return undefined;
};

// 1. the uninterrupted run, timing its phases
const ref = await attempt('ref', null);
if (ref.code !== 0) throw new Error('the reference run failed');
const firstStep = ref.lines.findIndex((l) => l.startsWith('step '));
const totalSteps = last(ref.lines, 'step')!;
const records = last(ref.lines, 'extract')!;
console.log(
  `uninterrupted run: ${records} feature records, ${totalSteps} training steps, ${(ref.ms / 1000).toFixed(1)} s (startup ${((ref.firstWorkMs ?? 0) / 1000).toFixed(1)} s)`,
);
const refSteps = ref.lines.length - firstStep;
// The work after startup, split between the phases by the share of progress lines (one per extraction batch,
// one per step) — only to spread the random kills over the whole run.
const workMs = Math.max(500, ref.ms - (ref.firstWorkMs ?? 0));
const extractLines = ref.lines.filter((l) => l.startsWith('extract ')).length;
const extractShare = extractLines / (extractLines + totalSteps);

// 2. the same run, killed KILLS times at random moments, resumed after each
const rows: string[] = [];
let kills = 0,
  extractKills = 0,
  trainKills = 0,
  worstLostSteps = 0,
  worstLostRecords = 0,
  attempts = 0;
let committedSteps = 0,
  committedRecords = 0;
let finished: Attempt | undefined;
const t0 = performance.now();
while (!finished) {
  attempts++;
  // Uniform over [0, remaining/(kills left + 1)) after the first line of work: each kill is expected to use
  // half of 1/(k+1) of the work left, so the KILLS kills spread over the run with room for a machine slower
  // or faster than during the reference run, and the last attempt completes it.
  const remaining = workMs * (1 - extractShare * (committedRecords / records) - (1 - extractShare) * (committedSteps / totalSteps));
  const delay = kills >= KILLS ? null : rng.uniform() * (remaining / (KILLS - kills + 1));
  const a = await attempt('killed', delay);
  const resumedAt = a.lines.find((l) => l.startsWith('log resuming at step '));
  const from = resumedAt ? Number(/step (\d+)/.exec(resumedAt)![1]) : 0;
  if (from < committedSteps) throw new Error(`resume started at step ${from}, but step ${committedSteps} was committed`);
  if (!a.killed) {
    if (a.code !== 0) throw new Error(`attempt ${attempts} failed (exit ${a.code})`);
    finished = a;
    break;
  }
  kills++;
  const reachedSteps = last(a.lines, 'step');
  const reachedRecords = last(a.lines, 'extract');
  const phase =
    reachedSteps !== undefined
      ? 'training'
      : reachedRecords === undefined
        ? 'startup'
        : reachedRecords < records
          ? 'extraction'
          : 'after extraction';
  if (phase === 'training') trainKills++;
  else extractKills++;
  // what survived: the cache's committed records, the last checkpoint's step
  const cfg = join(root, 'killed', 'out', 'last', 'config.json');
  const ckStep = existsSync(cfg) ? (JSON.parse(readFileSync(cfg, 'utf8')) as { training: { step: number } }).training.step : 0;
  let cached = 0;
  if (existsSync(join(root, 'killed', 'cache', 'meta.json'))) {
    const c = await FeatureCache.openExisting(join(root, 'killed', 'cache'));
    cached = c.size;
    c.close();
  }
  const lostSteps = (reachedSteps ?? ckStep) - ckStep;
  const lostRecords = Math.max(0, (reachedRecords ?? cached) - cached);
  if (lostSteps > EVERY) throw new Error(`kill ${kills}: ${lostSteps} steps lost (checkpoint every ${EVERY})`);
  if (lostRecords > 0) throw new Error(`kill ${kills}: ${lostRecords} committed records lost`);
  worstLostSteps = Math.max(worstLostSteps, lostSteps);
  worstLostRecords = Math.max(worstLostRecords, lostRecords);
  committedSteps = ckStep;
  committedRecords = cached;
  rows.push(
    `kill ${String(kills).padStart(2)} after ${(a.firstWorkMs! / 1000 + (delay ?? 0) / 1000).toFixed(2)} s, in ${phase.padEnd(18)} resumed from step ${String(from).padStart(3)}; reached: ${String(reachedRecords ?? '-').padStart(3)} records, step ${String(reachedSteps ?? '-').padStart(3)}; committed: ${String(cached).padStart(3)} records, step ${String(ckStep).padStart(3)}; lost ${lostSteps} steps`,
  );
  console.log(rows.at(-1));
}
const killedMs = performance.now() - t0;

// 3. byte-for-byte comparison with the uninterrupted run
const problems: string[] = [];
const refCache = await FeatureCache.openExisting(join(root, 'ref', 'cache'));
const gotCache = await FeatureCache.openExisting(join(root, 'killed', 'cache'));
if (refCache.size !== gotCache.size) problems.push(`cache: ${gotCache.size} records, uninterrupted ${refCache.size}`);
let recordBytes = 0;
for (const key of refCache.keys()) {
  const x = refCache.read(key),
    y = gotCache.has(key) ? gotCache.read(key) : undefined; // read() verifies each record's digest
  const same =
    y &&
    Buffer.compare(Buffer.from(x.tokens.buffer), Buffer.from(y.tokens.buffer)) === 0 &&
    Buffer.compare(Buffer.from(x.imageEmbed.buffer), Buffer.from(y.imageEmbed.buffer)) === 0;
  if (!same) problems.push(`cache record ${key} differs`);
  recordBytes += x.tokens.byteLength + x.imageEmbed.byteLength;
}
refCache.close();
gotCache.close();
const tensors = (dir: string) => {
  const j = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { digests: Record<string, { tensors: Record<string, string> }> };
  return Object.entries(j.digests)
    .flatMap(([f, d]) => Object.entries(d.tensors).map(([t, h]) => `${f.split('-')[0]}:${t}=${h}`))
    .sort();
};
let tensorCount = 0;
for (const ck of ['last', 'best']) {
  const a = tensors(join(root, 'ref', 'out', ck)),
    b = tensors(join(root, 'killed', 'out', ck));
  tensorCount += a.length;
  if (a.join() !== b.join()) problems.push(`${ck}/: tensors differ (${a.filter((x, i) => x !== b[i]).length} of ${a.length})`);
}
const report = (name: string) => readFileSync(join(root, name, 'out', 'test-report', 'report.json'), 'utf8');
if (report('ref') !== report('killed')) problems.push('test-report/report.json differs');
const losses = (name: string) =>
  (JSON.parse(readFileSync(join(root, name, 'out', 'training-log.json'), 'utf8')) as { epochs: { loss: number; step: number }[] }).epochs
    .map((e) => `${e.step}:${e.loss}`)
    .join();
if (losses('ref') !== losses('killed')) problems.push('training-log.json losses differ');

console.log('');
console.log(
  `${kills} kills (${extractKills} during startup/extraction, ${trainKills} during training) in ${attempts} attempts, ${(killedMs / 1000).toFixed(1)} s in all vs ${(ref.ms / 1000).toFixed(1)} s uninterrupted (×${(killedMs / ref.ms).toFixed(2)})`,
);
console.log(
  `work lost per kill: at most ${worstLostSteps} training steps (checkpoint every ${EVERY}), ${worstLostRecords} committed feature records`,
);
console.log(
  `compared with the uninterrupted run: ${refSteps > 0 ? totalSteps : 0} steps; ${records} cache records (${(recordBytes / 1024).toFixed(0)} KiB), ${tensorCount} checkpoint tensors (last/ and best/, weights + Adam + EMA), test report, training losses`,
);
console.log(
  problems.length
    ? `DIFFERENT: ${problems.slice(0, 10).join('; ')}`
    : 'identical: every cache record, every checkpoint tensor, the test report and the losses are byte for byte the same',
);
if (!values.keep) rmSync(root, { recursive: true, force: true });
else console.log(`kept ${root}`);
process.exitCode = problems.length || kills < KILLS ? 1 : 0;
