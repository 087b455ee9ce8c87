// npm run bench:serve-abuse [-- --seconds 60 --clients 200 --rss-bound-mb 600 --seed 1]
// The server under abuse (issue 19's goal): the real `clip-decoder serve` process (a child, --port 0, default
// limits) on 127.0.0.1, and `--clients` concurrent clients for `--seconds` mixing good images with decompression
// bombs, SVG work bombs, slow bodies, oversized labels fields and oversized bodies. Each request is its own
// connection (raw socket, `Connection: close`). A good request answered 503 (busy or past its deadline) is
// retried after its Retry-After, as a client should; it must end in 200. Every bad request must get the named
// error of its class (or a 503). The server must answer /healthz throughout, and its peak RSS (VmHWM) stay under
// the bound: 600 MB by default = the idle process (~325 MB here) + 2 × --max-buffered (bodies and their copies,
// 160 MB) + ~100 MB of decode and ONNX working memory. Bounded: no new requests after --seconds, no retries
// after --seconds + 20 s, each request given up after 45 s; exit 1 on a miss.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { multipartBody, pngBomb, rawRequest, svgWorkBomb, type RawResponse } from '../tests/helpers/abuse.ts';
import { notoSvg, renderPng } from '../tests/helpers/images.ts';
import { startServe } from '../tests/helpers/serve-process.ts';
import { DEFAULT_LIMITS, labelsFieldBytes } from '../src/serve/limits.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    clients: { type: 'string', default: '200' },
    'rss-bound-mb': { type: 'string', default: '600' },
    seed: { type: 'string', default: '1' },
  },
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const rssBoundMb = Number(values['rss-bound-mb']);

// A seeded generator (mulberry32): the same mix every run.
let seed = Number(values.seed) >>> 0;
const random = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

// --- inputs ---------------------------------------------------------------------------------------------------
const names = ['dog-face', 'pizza', 'red-apple', 'bicycle', 'house', 'sun', 'cat-face', 'rocket', 'guitar', 'deciduous-tree'];
const goodImages: { data: Buffer; type: string }[] = [];
for (const [i, name] of names.entries()) {
  const png = renderPng(notoSvg(name), 128 + 32 * (i % 4));
  goodImages.push(
    i % 2
      ? { data: await sharp(png).flatten({ background: '#fff' }).jpeg({ quality: 90 }).toBuffer(), type: 'image/jpeg' }
      : { data: png, type: 'image/png' },
  );
}
const vocabulary = readFileSync('src/data/nus-wide/TagList1k.txt', 'utf8')
  .split('\n')
  .map((s) => s.trim())
  .filter(Boolean);
const bomb = pngBomb(12_000, 12_000); // 144 MP of zeros > the 100 MP pixel limit
const svgBomb = svgWorkBomb(1000); // ~12 s of librsvg work > the 2 s render limit
const hugeLabels = `${Array.from({ length: 1000 }, (_, i) => `${vocabulary[i % vocabulary.length]}${i}`).join(',')},${' '.repeat(labelsFieldBytes(DEFAULT_LIMITS))}`;

// A 10 MB photo-sized upload (noise does not compress): the issue's 100 parallel 10 MB uploads took 1.17 GB.
const noise = Buffer.alloc(1900 * 1800 * 3);
for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(random() * 256);
const bigImage = await sharp(noise, { raw: { width: 1900, height: 1800, channels: 3 } })
  .png({ compressionLevel: 0 })
  .toBuffer();

type Kind = 'good' | 'good-10MB' | 'png-bomb' | 'svg-bomb' | 'slow-body' | 'big-field' | 'big-body';
/** Each class, its share of requests, and the error codes it may be answered with (good ones: 200 in the end). */
const CLASSES: { kind: Kind; share: number; good: boolean; expect: string[] }[] = [
  { kind: 'good', share: 0.55, good: true, expect: ['200'] },
  { kind: 'good-10MB', share: 0.05, good: true, expect: ['200'] },
  { kind: 'png-bomb', share: 0.1, good: false, expect: ['413 IMAGE_TOO_LARGE', '503 OVERLOADED', '503 TIMEOUT'] },
  { kind: 'svg-bomb', share: 0.05, good: false, expect: ['413 IMAGE_TOO_COMPLEX', '503 OVERLOADED', '503 TIMEOUT'] },
  { kind: 'slow-body', share: 0.05, good: false, expect: ['408 BODY_TIMEOUT', '503 OVERLOADED', '503 TIMEOUT'] },
  { kind: 'big-field', share: 0.1, good: false, expect: ['413 TOO_LARGE', '503 OVERLOADED', '503 TIMEOUT'] },
  { kind: 'big-body', share: 0.1, good: false, expect: ['413 TOO_LARGE', '503 OVERLOADED', '503 TIMEOUT'] },
];

function pick(): (typeof CLASSES)[number] {
  let r = random();
  for (const c of CLASSES) if ((r -= c.share) < 0) return c;
  return CLASSES[0]!;
}

function head(path: string, type: string, length: number): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: ${type}\r\nContent-Length: ${length}\r\n\r\n`;
}

async function send(url: string, kind: Kind): Promise<RawResponse> {
  switch (kind) {
    case 'good': {
      const img = goodImages[Math.floor(random() * goodImages.length)]!;
      const labels = Array.from({ length: 10 }, (_, i) => vocabulary[(Math.floor(random() * 100) * 10 + i) % vocabulary.length]!);
      if (random() < 0.5)
        return rawRequest(url, head(`/v1/tag?labels=${encodeURIComponent(labels.join(','))}`, img.type, img.data.length), img.data, {
          giveUpMs: 45_000,
        });
      const { body, contentType } = multipartBody([
        { name: 'labels', value: labels.join(',') },
        { name: 'image', filename: 'x', data: img.data, type: img.type },
      ]);
      return rawRequest(url, head('/v1/tag', contentType, body.length), body, { giveUpMs: 45_000 });
    }
    case 'good-10MB':
      return rawRequest(url, head('/v1/tag?labels=dog,cat,sun', 'image/png', bigImage.length), bigImage, { giveUpMs: 45_000 });
    case 'png-bomb':
      return rawRequest(url, head('/v1/tag?labels=dog,cat', 'image/png', bomb.length), bomb, { giveUpMs: 45_000 });
    case 'svg-bomb':
      return rawRequest(url, head('/v1/tag?labels=dog,cat', 'image/svg+xml', svgBomb.length), svgBomb, { giveUpMs: 45_000 });
    case 'slow-body': // 10 bytes every 2 s of a 1,000-byte body: 200 s if never cut
      return rawRequest(url, head('/v1/tag?labels=dog', 'image/png', 1000), Buffer.alloc(1000), {
        bytesPerTick: 10,
        tickMs: 2000,
        giveUpMs: 45_000,
      });
    case 'big-field': {
      const { body, contentType } = multipartBody([
        { name: 'image', filename: 'x', data: goodImages[0]!.data },
        { name: 'labels', value: hugeLabels },
      ]);
      return rawRequest(url, head('/v1/tag', contentType, body.length), body, { giveUpMs: 45_000 });
    }
    case 'big-body': // declares 30 MB > --max-body; refused on its headers, so the client sends none of it
      return rawRequest(url, head('/v1/tag?labels=dog', 'image/png', 30 * 1024 * 1024), Buffer.alloc(0), { giveUpMs: 45_000 });
  }
}

function outcome(r: RawResponse): string {
  if (r.status === 0) return 'no answer';
  if (r.status === 200) return '200';
  try {
    return `${r.status} ${(JSON.parse(r.body) as { error: { code: string } }).error.code}`;
  } catch {
    return `${r.status} unnamed`;
  }
}

function procStatus(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0);
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const pct = (xs: number[], p: number) =>
  xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]! : NaN;
const mb = (kb: number) => (kb / 1024).toFixed(0);

// --- the server -----------------------------------------------------------------------------------------------
const { child: server, url } = await startServe();
let serverExited = false;
server.once('exit', () => (serverExited = true));
const pid = server.pid!;

// Warm up (label sets, ONNX sessions) before measuring the idle footprint.
for (let i = 0; i < 5; i++) await send(url, 'good');
const idle = procStatus(pid)!;
const cpuFlags = /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim().split(/\s+/) ?? [];
console.log(
  `clip-decoder serve pid ${pid} at ${url}; idle RSS ${mb(idle.rss)} MB; CPU vector extensions: ${['sse4_2', 'avx', 'avx2', 'fma', 'avx512f', 'avx512_vnni', 'amx_tile'].filter((f) => cpuFlags.includes(f)).join(' ') || 'none listed'}`,
);
console.log(
  `${clients} clients for ${seconds} s; limits: body ${DEFAULT_LIMITS.maxBodyBytes} B, buffered ${2 * DEFAULT_LIMITS.maxConcurrent * DEFAULT_LIMITS.maxBodyBytes} B, concurrency ${DEFAULT_LIMITS.maxConcurrent}, queue ${DEFAULT_LIMITS.maxQueue}, deadline ${DEFAULT_LIMITS.deadlineMs} ms, body timeout ${DEFAULT_LIMITS.bodyTimeoutMs} ms, render ${DEFAULT_LIMITS.maxRenderMs} ms`,
);

// --- monitors -------------------------------------------------------------------------------------------------
let peakRss = idle.rss;
let peakWithRenderers = idle.rss;
const sampler = setInterval(() => {
  const s = procStatus(pid);
  if (!s) return;
  peakRss = Math.max(peakRss, s.rss);
  peakWithRenderers = Math.max(peakWithRenderers, s.rss + childrenOf(pid).reduce((sum, c) => sum + (procStatus(c)?.rss ?? 0), 0));
}, 100);
const health = { ok: 0, failed: 0, worstMs: 0 };
const healthLoop = setInterval(async () => {
  const t0 = performance.now();
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
    await res.arrayBuffer();
    if (res.status === 200) health.ok++;
    else health.failed++;
  } catch {
    health.failed++;
  }
  health.worstMs = Math.max(health.worstMs, performance.now() - t0);
}, 500);

// --- the clients ----------------------------------------------------------------------------------------------
const counts = new Map<string, number>(); // "class outcome" → requests
const goodLatency = new Map<Kind, number[]>(); // ms of each 200 to a good request (one attempt)
const goodEndToEnd = new Map<Kind, number[]>(); // ms from a good request's first attempt to its 200, retries included
const push = (m: Map<Kind, number[]>, k: Kind, v: number) => m.set(k, [...(m.get(k) ?? []), v]);
let goodUnanswered = 0; // good requests that never got a 200
let wrong = 0; // answers outside their class's expectations
const examples: string[] = [];
const stopAt = performance.now() + seconds * 1000;

async function client(): Promise<void> {
  while (performance.now() < stopAt) {
    const c = pick();
    const t0 = performance.now();
    for (;;) {
      const r = await send(url, c.kind);
      const o = outcome(r);
      counts.set(`${c.kind}\t${o}`, (counts.get(`${c.kind}\t${o}`) ?? 0) + 1);
      if (c.good && o === '200') {
        push(goodLatency, c.kind, r.ms);
        push(goodEndToEnd, c.kind, performance.now() - t0);
        break;
      }
      const busy = o === '503 OVERLOADED' || o === '503 TIMEOUT';
      if (c.good && busy && performance.now() < stopAt + 20_000) {
        await new Promise((res) => setTimeout(res, 1000 * Number(/retry-after: (\d+)/i.exec(r.headers)?.[1] ?? 1) * (0.5 + random())));
        continue;
      }
      if (c.good) goodUnanswered++;
      if (!c.expect.includes(o)) {
        wrong++;
        if (examples.length < 5) examples.push(`${c.kind}: ${o} ${r.body.slice(0, 200)}`);
      }
      break;
    }
  }
}
const t0 = performance.now();
await Promise.all(Array.from({ length: clients }, client));
const wall = (performance.now() - t0) / 1000;
clearInterval(healthLoop);
clearInterval(sampler);
const final = procStatus(pid);
const up = !serverExited;
server.kill('SIGTERM');

// --- report ---------------------------------------------------------------------------------------------------
console.log(`\nran ${wall.toFixed(1)} s (no new requests after ${seconds} s)`);
console.log('class\tanswer\trequests');
for (const [k, n] of [...counts].sort()) console.log(`${k}\t${n}`);
const answered = [...goodEndToEnd.values()].reduce((n, xs) => n + xs.length, 0);
console.log(`good requests: ${answered + goodUnanswered}, answered 200: ${answered}, never 200: ${goodUnanswered}`);
for (const kind of ['good', 'good-10MB'] as const) {
  const one = goodLatency.get(kind) ?? [];
  const all = goodEndToEnd.get(kind) ?? [];
  console.log(
    `${kind} latency of a 200 attempt: p50 ${pct(one, 50).toFixed(0)} ms, p99 ${pct(one, 99).toFixed(0)} ms; ` +
      `first attempt to 200 (retries after 503 included): p50 ${pct(all, 50).toFixed(0)} ms, p99 ${pct(all, 99).toFixed(0)} ms`,
  );
}
console.log(`bad requests answered outside their named errors: ${wrong}${examples.length ? `\n  ${examples.join('\n  ')}` : ''}`);
console.log(
  `/healthz every 0.5 s: ${health.ok} ok, ${health.failed} failed, slowest ${health.worstMs.toFixed(0)} ms; server up at the end: ${up}`,
);
const hwm = Math.max(final?.hwm ?? 0, peakRss);
console.log(
  `server RSS: idle ${mb(idle.rss)} MB, peak (VmHWM) ${mb(hwm)} MB, bound ${rssBoundMb} MB; with SVG renderer children (sampled every 0.1 s) ${mb(peakWithRenderers)} MB`,
);
const pass = up && health.failed === 0 && goodUnanswered === 0 && wrong === 0 && hwm / 1024 < rssBoundMb;
console.log(pass ? 'PASS' : 'FAIL');
await new Promise((r) => server.once('exit', r).once('error', r));
process.exit(pass ? 0 : 1);
