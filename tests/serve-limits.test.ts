// The server's limits (issue 19 items 4–7, 11): each limit answers a named error with the status of its code,
// nothing is buffered beyond the body budget, slow and heavy requests are cut, and the server keeps serving.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { HTTP_STATUS, type ErrorCode } from '../src/errors.ts';
import { Tagger } from '../src/tagger/tagger.ts';
import { buildServer, type ServerOptions } from '../src/serve/server.ts';
import { DEFAULT_LIMITS, labelsFieldBytes } from '../src/serve/limits.ts';
import { startServe } from './helpers/serve-process.ts';
import { trainTinyHead, TINY_CLIP } from './helpers/tiny-head.ts';
import { multipartBody, rawRequest, svgWorkBomb } from './helpers/abuse.ts';
import { notoSvg } from './helpers/images.ts';

const tiny = await trainTinyHead();
const tagger = await Tagger.load({ model: TINY_CLIP, head: tiny.dir, threads: 1 });
const dog = readFileSync(tiny.images[0]!.file);
const servers: { close(): Promise<unknown> }[] = [];
after(() => Promise.all(servers.map((s) => s.close())));

/** A server on a loopback port with these limits. */
async function listen(options: ServerOptions): Promise<{ url: string; errors: string[] }> {
  const errors: string[] = [];
  const app = buildServer(tagger, { onServerError: (l) => errors.push(l), ...options });
  servers.push(app);
  return { url: await app.listen({ host: '127.0.0.1', port: 0 }), errors };
}

type ErrorBody = { error: { code: ErrorCode; message: string } };

/** Asserts a named error: the status is the one HTTP_STATUS gives its code. */
async function expectError(res: Response, code: ErrorCode, message: RegExp): Promise<void> {
  const body = (await res.json()) as ErrorBody;
  assert.equal(body.error.code, code, body.error.message);
  assert.equal(res.status, HTTP_STATUS[code]);
  assert.match(body.error.message, message);
}

function post(url: string, parts: Parameters<typeof multipartBody>[0], query = ''): Promise<Response> {
  const { body, contentType } = multipartBody(parts);
  return fetch(`${url}/v1/tag${query}`, { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': contentType } });
}

test('HTTP_STATUS: every code has a 4xx or 5xx status; the request codes are 4xx, busy and deadline 503', () => {
  for (const [code, status] of Object.entries(HTTP_STATUS)) assert.ok(status >= 400 && status < 600, `${code}: ${status}`);
  assert.equal(HTTP_STATUS.TOO_LARGE, 413);
  assert.equal(HTTP_STATUS.OVERLOADED, 503);
  assert.equal(HTTP_STATUS.TIMEOUT, 503);
  assert.equal(HTTP_STATUS.BODY_TIMEOUT, 408);
  assert.equal(HTTP_STATUS.INTERNAL, 500);
});

test('item 4: 1,000 labels of 100 CJK characters (300 KB) all arrive; a labels field over its limit is a named 413', async () => {
  const { url } = await listen({ maxLabels: 1000, maxLabelLength: 100 });
  const labels = Array.from({ length: 1000 }, (_, i) => `${String.fromCharCode(0x4e00 + i)}${'猫'.repeat(99)}`);
  assert.equal(Buffer.byteLength(labels.join(',')), 300_999);
  const ok = await post(
    url,
    [
      { name: 'labels', value: labels.join(',') },
      { name: 'image', filename: 'dog.png', data: dog },
    ],
    '?top=1000',
  );
  assert.equal(ok.status, 200);
  const body = (await ok.json()) as { labels: { label: string }[] };
  assert.equal(body.labels.length, 1000);
  assert.deepEqual(body.labels.map((l) => l.label).sort(), [...labels].sort());

  // Over the byte limit (labels padded with spaces): named, not truncated.
  const limit = labelsFieldBytes({ maxLabels: 1000, maxLabelLength: 100 });
  assert.equal(limit, 416_000);
  const padded = labels.map((l) => `${l}${' '.repeat(120)}`).join(',');
  const big = await post(url, [
    { name: 'labels', value: padded },
    { name: 'image', filename: 'dog.png', data: dog },
  ]);
  await expectError(big, 'TOO_LARGE', /field "labels" is larger than 416000 bytes \(--max-labels 1000 × --max-label-length 100\)/);
});

/** The server's [buffered bytes, waiting] once it equals `want`, or as it is after 10 s (polled: no fixed sleep). */
async function loadBecomes(url: string, want: [number, number]): Promise<[number, number]> {
  let got: [number, number] = [-1, -1];
  for (const t0 = Date.now(); Date.now() - t0 < 10_000; await new Promise((r) => setTimeout(r, 50))) {
    const { load } = (await (await fetch(`${url}/healthz`)).json()) as { load: { waiting: number; bufferedBytes: number } };
    got = [load.bufferedBytes, load.waiting];
    if (got[0] === want[0] && got[1] === want[1]) break;
  }
  return got;
}

test('item 5: past the queue a request gets 503 + Retry-After before its body is sent; bodies wait unread', async () => {
  // Room for one 400 KB body; one request may wait for room.
  const { url } = await listen({ maxBodyBytes: 500_000, maxBufferedBytes: 600_000, maxLabels: 10, maxQueue: 1, maxConcurrent: 1 });
  const head = (n: number) => `POST /v1/tag?labels=dog HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: ${n}\r\n\r\n`;
  const { hostname, port } = new URL(url);
  // Two clients declare 400 KB and send nothing: the first holds the budget, the second waits in the queue.
  const holders = [connect(Number(port), hostname), connect(Number(port), hostname)];
  for (const s of holders) {
    s.on('error', () => {});
    await once(s, 'connect');
    s.write(head(400_000));
  }
  assert.deepEqual(await loadBecomes(url, [400_000, 1]), [400_000, 1]);
  // The third is refused at once, without our sending its body.
  const third = await rawRequest(url, head(400_000), Buffer.alloc(0), { giveUpMs: 3000 });
  assert.equal(third.status, 503, third.headers);
  assert.match(third.headers, /retry-after: 1/i);
  assert.ok(third.ms < 3000, `${third.ms} ms`); // at once: well before the 3 s we would wait for a body
  assert.equal((JSON.parse(third.body) as ErrorBody).error.code, 'OVERLOADED');
  for (const s of holders) s.destroy();
  // Their reservations and places in the queue are released when they leave: a good request is answered.
  assert.deepEqual(await loadBecomes(url, [0, 0]), [0, 0]);
  const res = await fetch(`${url}/v1/tag?labels=dog`, {
    method: 'POST',
    body: new Uint8Array(dog),
    headers: { 'content-type': 'image/png' },
  });
  assert.equal(res.status, 200);
});

test('item 6: an SVG work bomb is cut at --max-render-ms (413); a request past --deadline gets 503; good SVGs tag as the library does', async () => {
  const { url } = await listen({ maxRenderMs: 800 });
  const bomb = svgWorkBomb(2000); // about 25 s of rendering
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/tag?labels=dog`, {
    method: 'POST',
    body: new Uint8Array(bomb),
    headers: { 'content-type': 'image/svg+xml' },
  });
  const ms = performance.now() - t0;
  await expectError(res, 'IMAGE_TOO_COMPLEX', /more than 800 ms to render \(--max-render-ms\)/);
  assert.ok(ms < 8000, `${ms} ms`); // cut: the bomb alone would render for about 25 s

  const svg = Buffer.from(notoSvg('dog-face'));
  const good = await fetch(`${url}/v1/tag?labels=dog,pizza,sun`, {
    method: 'POST',
    body: new Uint8Array(svg),
    headers: { 'content-type': 'image/svg+xml' },
  });
  assert.equal(good.status, 200);
  const served = (await good.json()) as { labels: { label: string; probability: number }[] };
  const lib = await tagger.tag(svg, ['dog', 'pizza', 'sun']);
  for (const l of lib.labels) {
    const p = served.labels.find((s) => s.label === l.label)!.probability;
    assert.ok(Math.abs(p - l.probability) < 1e-3, `${l.label}: served ${p} vs library ${l.probability}`);
  }

  const slow = await listen({ maxRenderMs: 20_000, deadlineMs: 600 });
  const t1 = performance.now();
  const late = await fetch(`${slow.url}/v1/tag?labels=dog`, {
    method: 'POST',
    body: new Uint8Array(bomb),
    headers: { 'content-type': 'image/svg+xml' },
  });
  assert.equal(late.headers.get('retry-after'), '1');
  await expectError(late, 'TIMEOUT', /not answered within 600 ms \(--deadline\)/);
  assert.ok(performance.now() - t1 < 5000); // answered near the deadline, not after the work
});

test('item 6: a slow body and slow headers are cut (408, connection closed); open connections are bounded', async () => {
  const { url } = await listen({ bodyTimeoutMs: 500, maxConnections: 4 });
  const head = `POST /v1/tag?labels=dog HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n`;
  // 10 bytes every 200 ms would take 20 s.
  const body = await rawRequest(url, head, Buffer.alloc(1000), { bytesPerTick: 10, tickMs: 200, giveUpMs: 5000 });
  assert.equal(body.status, 408, body.headers);
  assert.equal((JSON.parse(body.body) as ErrorBody).error.code, 'BODY_TIMEOUT');
  assert.match((JSON.parse(body.body) as ErrorBody).error.message, /within 500 ms \(--body-timeout\)/);
  assert.ok(body.closed && body.ms < 4500, `closed ${body.closed} after ${body.ms} ms`); // the body alone needs 20 s

  // Headers that never finish: cut by Node's header timeout (checked every second).
  const headers = await rawRequest(url, 'POST /v1/tag HTTP/1.1\r\nHost: x\r\n', Buffer.from('X-Slow: 1\r\n'.repeat(20)), {
    bytesPerTick: 11,
    tickMs: 200,
    giveUpMs: 5000,
  });
  assert.equal(headers.status, 408, headers.headers);
  assert.equal((JSON.parse(headers.body) as ErrorBody).error.code, 'BODY_TIMEOUT');
  assert.ok(headers.closed && headers.ms < 4500, `closed ${headers.closed} after ${headers.ms} ms`);

  // Four idle connections are held; a fifth is closed at once.
  const { hostname, port } = new URL(url);
  const idle = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const s = connect(Number(port), hostname);
      s.on('error', () => {});
      await once(s, 'connect');
      return s;
    }),
  );
  await new Promise((r) => setTimeout(r, 100));
  const fifth = await rawRequest(url, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', Buffer.alloc(0), { giveUpMs: 2000 });
  assert.deepEqual([fifth.status, fifth.closed], [0, true]);
  for (const s of idle) s.destroy();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await fetch(`${url}/healthz`)).status, 200);
});

test('item 7: malformed multipart, repeated parameters and fields are named 400s; files and fields name their limits', async () => {
  const { url, errors } = await listen({});
  const image = { name: 'image', filename: 'dog.png', data: dog };
  const broken = Buffer.from(`--x\r\nContent-Disposition: form-data; name="labels"\r\n\r\ndog\r\n--x\r\nContent-Disposition: form-da`);
  await expectError(
    await fetch(`${url}/v1/tag`, {
      method: 'POST',
      body: new Uint8Array(broken),
      headers: { 'content-type': 'multipart/form-data; boundary=x' },
    }),
    'BAD_REQUEST',
    /malformed multipart body/,
  );
  await expectError(
    await fetch(`${url}/v1/tag?labels=a&labels=b`, { method: 'POST', body: new Uint8Array(dog), headers: { 'content-type': 'image/png' } }),
    'BAD_REQUEST',
    /query parameter "labels" is given 2 times/,
  );
  await expectError(
    await post(url, [{ name: 'labels', value: 'a' }, { name: 'labels', value: 'b' }, image]),
    'BAD_REQUEST',
    /field "labels" is given twice/,
  );
  await expectError(
    await post(url, [{ name: 'labels', value: 'dog' }, image, { ...image, name: 'image2' }]),
    'TOO_LARGE',
    /more than 1 file/,
  );
  await expectError(
    await post(url, [
      ...['labels', 'top', 'threshold', 'attention', 'x'].map((name) => ({ name, value: name === 'labels' ? 'dog' : '1' })),
      image,
    ]),
    'TOO_LARGE',
    /more than 4 fields/,
  );
  await expectError(
    await post(url, [{ name: 'labels', value: 'dog' }, { name: 'top', value: '1'.repeat(100) }, image]),
    'TOO_LARGE',
    /field "top" is larger than 64 bytes/,
  );
  await expectError(await fetch(`${url}/v2/tag`), 'NOT_FOUND', /no route GET \/v2\/tag/);
  await expectError(
    await fetch(`${url}/v1/tag?labels=${'x'.repeat(20_000)}`, {
      method: 'POST',
      body: new Uint8Array(dog),
      headers: { 'content-type': 'image/png' },
    }),
    'HEADERS_TOO_LARGE',
    /larger than 16 KB: send long label lists as a multipart "labels" field/,
  );
  assert.deepEqual(errors, [], 'no 5xx');
  assert.equal((await post(url, [{ name: 'labels', value: 'dog' }, image])).status, 200);
});

test('item 7: a 5xx is answered "internal error" and reported with its cause', async () => {
  const errors: string[] = [];
  const broken = Object.create(tagger, {
    tag: {
      value: async () => {
        throw new TypeError('boom in tag');
      },
    },
  }) as Tagger;
  const app = buildServer(broken, { onServerError: (l) => errors.push(l) });
  servers.push(app);
  const res = await app.inject({ method: 'POST', url: '/v1/tag?labels=dog', payload: dog, headers: { 'content-type': 'image/png' } });
  assert.equal(res.statusCode, 500);
  assert.deepEqual(res.json(), { error: { code: 'INTERNAL', message: 'internal error' } });
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /500 INTERNAL on POST \/v1\/tag\?labels=dog: internal error\n {2}cause: TypeError: boom in tag/);
});

/** Runs `clip-decoder serve` with arguments until it exits (at most 60 s). */
async function serveExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['bin/clip-decoder.js', 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stderr };
}

test('item 11: `serve` on a busy port or a bad --host prints one line naming the flag and exits 2', async () => {
  const busy = createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  const port = (busy.address() as { port: number }).port;
  try {
    const inUse = await serveExit(['--port', String(port)]);
    assert.equal(inUse.code, 2, inUse.stderr);
    assert.equal(
      inUse.stderr,
      `clip-decoder: --port ${port}: the address 127.0.0.1:${port} is already in use; pick another port (0 for any)\n`,
    );
  } finally {
    busy.close();
  }
  const host = await serveExit(['--port', '0', '--host', '10.254.254.254']);
  assert.equal(host.code, 2, host.stderr);
  assert.match(host.stderr, /^clip-decoder: --host 10\.254\.254\.254: not an address of this machine \(EADDRNOTAVAIL\)[^\n]*\n$/);
  const flag = await serveExit(['--port', '0', '--body-timeout', '0']);
  assert.equal(flag.code, 2, flag.stderr);
  assert.equal(flag.stderr, 'clip-decoder: --body-timeout must be a positive integer, got "0"\n');
});

test('`serve` flags reach the server: --body-timeout and --max-labels of the real process', async () => {
  const { child, url } = await startServe(['--body-timeout', '500', '--max-labels', '3']);
  try {
    const slow = await rawRequest(
      url,
      'POST /v1/tag?labels=dog HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n',
      Buffer.alloc(100),
      { bytesPerTick: 10, tickMs: 2000, giveUpMs: 5000 },
    );
    assert.equal(slow.status, 408, slow.headers);
    assert.match(slow.body, /"code":"BODY_TIMEOUT".*within 500 ms \(--body-timeout\)/);
    const many = await fetch(`${url}/v1/tag?labels=a,b,c,d`, {
      method: 'POST',
      body: new Uint8Array(dog),
      headers: { 'content-type': 'image/png' },
    });
    await expectError(many, 'TOO_MANY_LABELS', /"labels": 4 labels; at most 3 are accepted/);
  } finally {
    child.kill('SIGTERM');
  }
  assert.deepEqual(await once(child, 'exit'), [0, null]);
});

test('item 5: 100 parallel 10 MB uploads to the real process: its peak RSS grows by less than 300 MB (was 870 MB)', async (t) => {
  const { child, url } = await startServe([]);
  const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
  try {
    await fetch(`${url}/v1/tag?labels=dog`, { method: 'POST', body: new Uint8Array(dog), headers: { 'content-type': 'image/png' } });
    const before = hwm();
    const body = Buffer.alloc(10 * 1024 * 1024, 7); // not an image: each one admitted is read whole, then refused
    const head = `POST /v1/tag?labels=dog HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: image/png\r\nContent-Length: ${body.length}\r\n\r\n`;
    const res = await Promise.all(Array.from({ length: 100 }, () => rawRequest(url, head, body, { giveUpMs: 30_000 })));
    const codes = new Map<string, number>();
    for (const r of res) {
      const code = r.status ? `${r.status} ${(JSON.parse(r.body) as ErrorBody).error.code}` : 'no answer';
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    const growth = hwm() - before;
    t.diagnostic(`peak RSS ${before.toFixed(0)} → ${(before + growth).toFixed(0)} MB; answers ${JSON.stringify([...codes])}`);
    assert.deepEqual([...codes.keys()].sort(), ['400 IMAGE_INVALID', '503 OVERLOADED'], JSON.stringify([...codes]));
    assert.ok(growth < 300, `peak RSS grew ${growth.toFixed(0)} MB`);
  } finally {
    child.kill('SIGTERM');
  }
  await once(child, 'exit');
});

test('the limit defaults fit a request within the documented label limits', () => {
  assert.equal(labelsFieldBytes(DEFAULT_LIMITS), 1000 * (4 * 200 + 16));
  // The largest list within the label limits: 1,000 distinct labels of 200 four-byte characters, ", "-separated.
  const widest = Array.from(
    { length: DEFAULT_LIMITS.maxLabels },
    (_, i) => String(i).padStart(4, '0') + '😀'.repeat(DEFAULT_LIMITS.maxLabelLength - 4),
  );
  assert.ok(widest.every((l) => [...l].length === DEFAULT_LIMITS.maxLabelLength));
  assert.ok(Buffer.byteLength(widest.join(', ')) <= labelsFieldBytes(DEFAULT_LIMITS));
});
