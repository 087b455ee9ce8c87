import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openClipFolder, REQUIRED_FILES } from '../src/clip/folder.ts';
import { resolveModelPath } from '../src/clip/hub.ts';
import { ClipDecoderError } from '../src/errors.ts';

function fakeFolder(overrides: { config?: object; pre?: object } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'clip-folder-'));
  mkdirSync(join(dir, 'onnx'));
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify(overrides.config ?? { projection_dim: 16, vision_config: { image_size: 32, patch_size: 8, hidden_size: 32 } }),
  );
  writeFileSync(
    join(dir, 'preprocessor_config.json'),
    JSON.stringify(overrides.pre ?? { size: { shortest_edge: 32 }, crop_size: { height: 32, width: 32 } }),
  );
  writeFileSync(join(dir, 'tokenizer.json'), '{}');
  writeFileSync(join(dir, 'tokenizer_config.json'), '{}');
  writeFileSync(join(dir, 'onnx/vision_model.onnx'), 'not onnx');
  writeFileSync(join(dir, 'onnx/text_model.onnx'), 'not onnx');
  return dir;
}

function rejectsWith(code: string, pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  };
}

test('a missing folder names the path and what was expected', async () => {
  await assert.rejects(
    openClipFolder('/nonexistent/model'),
    rejectsWith('MODEL_NOT_FOUND', /\/nonexistent\/model: no such model folder \(expected a CLIP folder with config\.json/),
  );
});

test('a missing ONNX file names the file', async () => {
  const dir = fakeFolder();
  rmSync(join(dir, 'onnx/text_model.onnx'));
  await assert.rejects(openClipFolder(dir), rejectsWith('MODEL_NOT_FOUND', /onnx\/text_model\.onnx: missing/));
});

test('an inconsistent config names the files that disagree', async () => {
  const dir = fakeFolder({ pre: { size: { shortest_edge: 40 }, crop_size: { height: 40, width: 40 } } });
  await assert.rejects(
    openClipFolder(dir),
    rejectsWith('MODEL_INVALID', /preprocessor_config\.json: produces 40×40 images but .*config\.json says vision_config\.image_size = 32/),
  );
  const bad = fakeFolder({ config: { vision_config: { image_size: 32, patch_size: 'eight' } } });
  await assert.rejects(openClipFolder(bad), rejectsWith('MODEL_INVALID', /vision_config\.patch_size must be a positive integer/));
  const notJson = fakeFolder();
  writeFileSync(join(notJson, 'config.json'), '{ broken');
  await assert.rejects(openClipFolder(notJson), rejectsWith('MODEL_INVALID', /config\.json: not valid JSON/));
});

test('offline, a hub id that is not cached fails at once and says how to use a local folder', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'hub-cache-'));
  const t0 = Date.now();
  await assert.rejects(
    resolveModelPath('Xenova/clip-vit-base-patch32', { cacheDir, allowRemote: false }),
    rejectsWith(
      'HUB_OFFLINE',
      /Xenova\/clip-vit-base-patch32: not a local folder and not cached.*pass its path, e\.g\. --model \.\/models\/clip-vit-base-patch32/,
    ),
  );
  // With downloads allowed, an unreachable hub fails fast too (no network here; where there is one this would download).
  if (!process.env.CLIP_DECODER_TEST_NETWORK) {
    await assert.rejects(resolveModelPath('Xenova/clip-vit-base-patch32', { cacheDir }), (e: unknown) => e instanceof ClipDecoderError);
  }
  assert.ok(Date.now() - t0 < 15_000);
});

test('a hub id found in the cache resolves to the cached folder', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'hub-cache-'));
  const src = fakeFolder();
  const target = join(cacheDir, 'someone/tiny-clip');
  mkdirSync(join(target, 'onnx'), { recursive: true });
  for (const f of REQUIRED_FILES) {
    writeFileSync(join(target, f), '{}');
  }
  assert.equal(await resolveModelPath('someone/tiny-clip', { cacheDir, allowRemote: false }), target);
  assert.equal(await resolveModelPath(src, { cacheDir, allowRemote: false }), src);
  await assert.rejects(resolveModelPath('./not/a/thing/here', { cacheDir }), rejectsWith('MODEL_NOT_FOUND', /no such model folder/));
});
