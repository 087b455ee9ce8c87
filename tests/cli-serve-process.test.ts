// `clip-decoder serve` as the user runs it: the real CLI process, with the bundled model, over loopback.
// It must stay up until signalled, answer /healthz and /v1/tag, and exit 0 on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { notoSvg, renderPng } from './helpers/images.ts';
import { startServe } from './helpers/serve-process.ts';

test('the real `serve` process stays up, tags over HTTP, and stops cleanly on SIGTERM', async () => {
  const { child, url, stderr } = await startServe();
  let exited = false;
  child.once('exit', () => (exited = true));
  try {
    // Longer than the 2 s after which 0.1's serve exited on its own.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(exited, false, `serve exited on its own: ${stderr()}`);
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { status: string }).status, 'ok');

    const dog = renderPng(notoSvg('dog-face'), 128);
    const res = await fetch(`${url}/v1/tag?labels=dog,pizza,sun`, {
      method: 'POST',
      body: new Uint8Array(dog),
      headers: { 'content-type': 'image/png' },
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { labels: { label: string; probability: number }[] };
    assert.deepEqual(body.labels.map((l) => l.label).sort(), ['dog', 'pizza', 'sun']);
    for (const l of body.labels) assert.ok(l.probability > 0 && l.probability < 1, `${l.label}: ${l.probability}`);
    assert.equal(exited, false);
  } finally {
    if (!exited) child.kill('SIGTERM');
  }
  const [code] = exited ? [child.exitCode] : await once(child, 'exit');
  assert.equal(code, 0, stderr());
  assert.match(stderr(), /shutting down/);
});
