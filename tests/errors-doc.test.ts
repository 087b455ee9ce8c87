// docs/errors.md is the users' table of error codes: it must list every code with the status the server sends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { HTTP_STATUS } from '../src/errors.ts';

test('docs/errors.md lists every error code with its HTTP status, and no other', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const rows = new Map([...doc.matchAll(/^\| `([A-Z_]+)` \| (\d+) \|/gm)].map((m) => [m[1]!, Number(m[2])]));
  assert.deepEqual([...rows.keys()].sort(), Object.keys(HTTP_STATUS).sort());
  for (const [code, status] of Object.entries(HTTP_STATUS)) assert.equal(rows.get(code), status, code);
});
