import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { HTTP_STATUS, type ErrorCode } from '../src/errors.ts';
import { Tagger } from '../src/tagger/tagger.ts';
import { buildServer } from '../src/serve/server.ts';
import type { InjectOptions } from 'fastify';
import { trainTinyHead, TINY_CLIP } from './helpers/tiny-head.ts';

const tiny = await trainTinyHead();
const tagger = await Tagger.load({ model: TINY_CLIP, head: tiny.dir, threads: 1 });
const app = buildServer(tagger, { maxBodyBytes: 300_000, maxLabels: 50, maxConcurrent: 1, maxQueue: 2 });
after(() => app.close());
const dog = readFileSync(tiny.images[0]!.file);

function multipart(fields: Record<string, string>, image?: { name: string; data: Buffer; field?: string }) {
  const boundary = '----clipdecodertest';
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields))
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  if (image) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${image.field ?? 'image'}"; filename="${image.name}"\r\nContent-Type: image/png\r\n\r\n`,
      ),
    );
    parts.push(image.data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

test('POST /v1/tag multipart: a probability per label, sorted, with attention on request', async () => {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/tag',
    ...multipart({ labels: 'pizza, dog ,sun', attention: '1' }, { name: 'dog.png', data: dog }),
  });
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json() as {
    labels: { label: string; probability: number; attention: number[] }[];
    grid: { height: number; width: number };
  };
  assert.deepEqual(body.labels.map((l) => l.label).sort(), ['dog', 'pizza', 'sun']);
  assert.equal(body.labels[0]!.label, 'dog');
  assert.deepEqual(body.grid, { height: 4, width: 4 });
  for (const l of body.labels) assert.equal(l.attention.length, 16);
  // The same as the library gives.
  const lib = await tagger.tag(dog, ['pizza', 'dog', 'sun']);
  assert.ok(Math.abs(lib.labels[0]!.probability - body.labels[0]!.probability) < 1e-6);
});

test('POST /v1/tag raw bytes with labels in the query string', async () => {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/tag?labels=dog,pizza&top=1',
    payload: dog,
    headers: { 'content-type': 'image/png' },
  });
  assert.equal(res.statusCode, 200, res.body);
  assert.deepEqual(
    (res.json() as { labels: { label: string }[] }).labels.map((l) => l.label),
    ['dog'],
  );
});

test('bad requests get a 4xx JSON error that says what was wrong, and the server keeps serving', async () => {
  const cases: [string, InjectOptions, number, RegExp][] = [
    [
      'not an image',
      { method: 'POST', url: '/v1/tag?labels=dog', payload: Buffer.from('hello'), headers: { 'content-type': 'image/png' } },
      400,
      /not a readable image/,
    ],
    [
      'corrupt png',
      { method: 'POST', url: '/v1/tag?labels=dog', payload: dog.subarray(0, 200), headers: { 'content-type': 'image/png' } },
      400,
      /image/,
    ],
    ['no labels', { method: 'POST', url: '/v1/tag', payload: dog, headers: { 'content-type': 'image/png' } }, 400, /no labels/],
    [
      'empty labels',
      { method: 'POST', url: '/v1/tag?labels=,,', payload: dog, headers: { 'content-type': 'image/png' } },
      400,
      /no labels/,
    ],
    [
      'duplicates',
      { method: 'POST', url: '/v1/tag?labels=dog,dog', payload: dog, headers: { 'content-type': 'image/png' } },
      400,
      /label "dog" appears twice/,
    ],
    [
      'too many',
      {
        method: 'POST',
        url: `/v1/tag?labels=${Array.from({ length: 51 }, (_, i) => `l${i}`).join(',')}`,
        payload: dog,
        headers: { 'content-type': 'image/png' },
      },
      400,
      /51 labels; at most 50/,
    ],
    [
      'too long',
      { method: 'POST', url: `/v1/tag?labels=${'x'.repeat(201)}`, payload: dog, headers: { 'content-type': 'image/png' } },
      400,
      /label "x{40}…" has 201 characters; at most 200 are accepted/,
    ],
    [
      'bad top',
      { method: 'POST', url: '/v1/tag?labels=dog&top=0', payload: dog, headers: { 'content-type': 'image/png' } },
      400,
      /"top" must be a positive integer/,
    ],
    [
      'too big',
      { method: 'POST', url: '/v1/tag?labels=dog', payload: Buffer.alloc(400_000), headers: { 'content-type': 'image/png' } },
      413,
      /larger than 300000 bytes/,
    ],
    ['json body', { method: 'POST', url: '/v1/tag', payload: { labels: 'dog' } }, 415, /send multipart\/form-data/],
    ['multipart without image', { method: 'POST', url: '/v1/tag', ...multipart({ labels: 'dog' }) }, 400, /no image/],
    [
      'wrong file field',
      { method: 'POST', url: '/v1/tag', ...multipart({ labels: 'dog' }, { name: 'x.png', data: dog, field: 'photo' }) },
      400,
      /unexpected file field "photo"/,
    ],
  ];
  for (const [name, req, status, pattern] of cases) {
    const res = await app.inject(req);
    assert.equal(res.statusCode, status, `${name}: ${res.body}`);
    const body = res.json() as { error: { code: ErrorCode; message: string } };
    assert.match(body.error.message, pattern, name);
    // One code → status table: the status is always the one of the code.
    assert.equal(res.statusCode, HTTP_STATUS[body.error.code], `${name}: ${body.error.code}`);
  }
  const ok = await app.inject({ method: 'POST', url: '/v1/tag?labels=dog', payload: dog, headers: { 'content-type': 'image/png' } });
  assert.equal(ok.statusCode, 200);
});

test('more concurrent requests than it can take: 503 with Retry-After, the rest answered', async () => {
  const reqs = Array.from({ length: 8 }, () =>
    app.inject({ method: 'POST', url: '/v1/tag?labels=dog,pizza', payload: dog, headers: { 'content-type': 'image/png' } }),
  );
  const res = await Promise.all(reqs);
  const codes = res.map((r) => r.statusCode);
  assert.ok(codes.includes(503), `codes ${codes}`);
  assert.ok(codes.filter((c) => c === 200).length >= 3, `codes ${codes}`);
  const busy = res.find((r) => r.statusCode === 503)!;
  assert.equal(busy.headers['retry-after'], '1');
  assert.match((busy.json() as { error: { message: string } }).error.message, /busy/);
});

test('GET /healthz and the page', async () => {
  const h = await app.inject({ method: 'GET', url: '/healthz' });
  assert.equal(h.statusCode, 200);
  assert.equal((h.json() as { status: string }).status, 'ok');
  const page = await app.inject({ method: 'GET', url: '/' });
  assert.equal(page.statusCode, 200);
  assert.match(page.headers['content-type'] as string, /text\/html/);
  assert.match(page.body, /<input id="labels"/);
});
