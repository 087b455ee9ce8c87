// `clip-decoder serve` as the user runs it: the real CLI process, with the bundled model, over loopback.
// It must stay up until signalled, answer /healthz and /v1/tag, and exit 0 on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { notoSvg, renderPng } from './helpers/images.ts';

/** Starts `clip-decoder serve --port 0` and resolves with the address it prints. */
async function startServe(): Promise<{ child: ReturnType<typeof spawn>; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, ['bin/clip-decoder.js', 'serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8');
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve printed no address in 60 s: ${err}`)), 60_000);
    child.stderr!.on('data', (chunk: string) => {
      err += chunk;
      const m = /serving on (http:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code} before listening: ${err}`)));
  });
  return { child, url, stderr: () => err };
}

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
