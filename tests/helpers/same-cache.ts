// Two feature caches hold the same records: the same keys, meta, sources, and bit-identical values.
import assert from 'node:assert/strict';
import { FeatureCache } from '../../src/features/cache.ts';

export async function assertSameCache(expectedDir: string, actualDir: string): Promise<number> {
  const a = await FeatureCache.openExisting(expectedDir);
  const b = await FeatureCache.openExisting(actualDir);
  try {
    assert.deepEqual(b.meta, a.meta);
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
    for (const k of a.keys()) {
      const x = a.read(k);
      const y = b.read(k);
      assert.deepEqual(y.tokens, x.tokens, k);
      assert.deepEqual(y.imageEmbed, x.imageEmbed, k);
      assert.equal(b.sourceOf(k), a.sourceOf(k), k);
    }
    return a.size;
  } finally {
    a.close();
    b.close();
  }
}
