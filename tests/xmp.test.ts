// `tag --out --xmp`: keywords into XMP sidecars (never the originals), merged with what other tools wrote, read
// back by exiftool itself (no config: a plain reader) for JPEG, PNG and WebP images.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

const EXIFTOOL = createRequire(import.meta.url)('exiftool-vendored.pl') as string;
const workDirsBefore = new Set(readdirSync(tmpdir()).filter((f) => f.startsWith('clip-decoder-xmp-')));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/clip-decoder.js', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** exiftool's own reading of an XMP file: tags by group-1 name ("XMP-dc:Subject"). */
function exiftoolRead(file: string): Record<string, unknown> {
  const r = spawnSync('perl', [EXIFTOOL, '-json', '-struct', '-G1', '-XMP:all', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as Record<string, unknown>[])[0]!;
}

/** A sidecar as another tool would have left it, written by exiftool from JSON. */
function exiftoolWrite(file: string, tags: Record<string, unknown>): void {
  const json = `${file}.json`;
  writeFileSync(json, JSON.stringify([{ SourceFile: '*', ...tags }]));
  const r = spawnSync('perl', [EXIFTOOL, `-json=${json}`, file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

async function image(file: string, rgb: [number, number, number]): Promise<string> {
  const img = sharp({ create: { width: 40, height: 32, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } });
  await (file.endsWith('.jpg') ? img.jpeg() : file.endsWith('.webp') ? img.webp() : img.png()).toFile(file);
  return file;
}

interface Rec {
  path: string;
  probabilities: Record<string, number>;
}
const records = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Rec);

/** Labels with p ≥ threshold, most probable first (at most top). */
function expectedKeywords(p: Record<string, number>, threshold: number, top = Infinity): string[] {
  return Object.entries(p)
    .filter(([, v]) => v >= threshold)
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k]) => k);
}

test('keywords above the threshold into sidecars of JPEG, PNG and WebP; other tools’ keywords and fields kept; originals untouched', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xmp-'));
  mkdirSync(join(dir, 'été 2024'));
  const jpg = await image(join(dir, 'été 2024', 'red barn.jpg'), [220, 20, 20]);
  const png = await image(join(dir, 'blue.png'), [20, 20, 220]);
  const webp = await image(join(dir, 'green\nline.webp'), [20, 200, 20]);
  // digiKam (say) already wrote a sidecar for the JPEG: a title, a rating, and keywords, one of which is a label.
  exiftoolWrite(`${jpg}.xmp`, {
    'XMP-dc:Subject': ['family', 'red'],
    'XMP-lr:HierarchicalSubject': ['People|Family'],
    'XMP-dc:Title': 'The barn',
    'XMP-xmp:Rating': 4,
  });
  const originals = [jpg, png, webp].map(sha);
  const out = join(dir, 'results.jsonl');
  // the bundled head's probabilities are calibrated (a label fits few images): a low threshold keeps some
  const T = 0.05;
  const r = cli('tag', dir, '--labels', 'red,green,blue,dog', '--out', out, '--xmp', '--threshold', String(T));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual([jpg, png, webp].map(sha), originals, 'the images are never written');

  const recs = records(out);
  for (const img of [jpg, png, webp]) {
    const rec = recs.find((x) => x.path === img)!;
    const ours = expectedKeywords(rec.probabilities, T);
    assert.ok(ours.length > 0, `${img}: some label passes ${T}`);
    const tags = exiftoolRead(`${img}.xmp`);
    const others = img === jpg ? ['family', 'red'] : [];
    assert.deepEqual(tags['XMP-dc:Subject'], [...others, ...ours.filter((k) => !others.includes(k))], img);
    // "red" was there before us: not claimed, so a later run never removes it.
    assert.deepEqual(
      tags['XMP-clipdecoder:Keywords'] ?? [],
      ours.filter((k) => !others.includes(k)),
    );
    const scores = (tags['XMP-clipdecoder:Scores'] ?? []) as { Label: string; Probability: number }[];
    for (const s of scores) assert.ok(Math.abs(s.Probability - rec.probabilities[s.Label]!) <= 5e-5, `${s.Label} probability`);
    assert.match(String(tags['XMP-clipdecoder:Model']), /^pico-clip@/);
    assert.equal(tags['XMP-clipdecoder:Threshold'], T);
  }
  const jt = exiftoolRead(`${jpg}.xmp`);
  assert.equal(jt['XMP-dc:Title'], 'The barn');
  assert.equal(jt['XMP-xmp:Rating'], 4);
  assert.ok((jt['XMP-dc:Subject'] as string[]).includes('red'));

  // A new vocabulary: our previous keywords are replaced, the others stay.
  const r2 = cli('tag', dir, '--labels', 'cat,dog,sky', '--out', out, '--force', '--xmp', '--threshold', '0', '--top', '2');
  assert.equal(r2.code, 0, r2.stderr);
  const rec2 = records(out).find((x) => x.path === jpg)!;
  const ours2 = expectedKeywords(rec2.probabilities, 0, 2);
  const jt2 = exiftoolRead(`${jpg}.xmp`);
  assert.deepEqual(jt2['XMP-dc:Subject'], ['family', 'red', ...ours2]);
  assert.deepEqual(jt2['XMP-clipdecoder:Keywords'], ours2);
  assert.deepEqual(jt2['XMP-lr:HierarchicalSubject'], ['People|Family', ...ours2], 'our "red" replaced there, the other kept');
  assert.equal(jt2['XMP-dc:Title'], 'The barn');
  assert.equal(jt2['XMP-xmp:Rating'], 4);

  // --dry-run: says what would change for each sidecar and changes nothing.
  const before = [jpg, png, webp].map((f) => sha(`${f}.xmp`));
  const resultsBefore = sha(out);
  const dry = cli('tag', dir, '--labels', 'sun,cat', '--out', out, '--force', '--xmp', '--threshold', '0', '--dry-run');
  assert.equal(dry.code, 0, dry.stderr);
  assert.deepEqual(
    [jpg, png, webp].map((f) => sha(`${f}.xmp`)),
    before,
  );
  assert.equal(sha(out), resultsBefore, '--dry-run writes no results either');
  const line = dry.stdout.split('\n').find((l) => l.startsWith(`${jpg}.xmp: `))!;
  const plus = [...line.matchAll(/ \+(\S+)/g)].map((m) => m[1]);
  const minus = [...line.matchAll(/ -(\S+)/g)].map((m) => m[1]);
  assert.deepEqual(plus.sort(), ['sun', ...(ours2.includes('cat') ? [] : ['cat'])].sort(), line);
  assert.deepEqual(minus.sort(), ours2.filter((k) => k !== 'cat').sort(), line);
  assert.match(line, /would update .*\(kept: family, red\)$/);
  assert.ok(dry.stdout.includes(`${JSON.stringify(`${webp}.xmp`)}: would update`), 'a name with a newline is quoted');
});

test('--xmp-naming replace writes photo.xmp (Adobe); two images for one sidecar: the second is named and skipped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xmp-naming-'));
  const jpg = await image(join(dir, 'photo.jpg'), [220, 20, 20]);
  await image(join(dir, 'photo.png'), [20, 20, 220]);
  const r = cli('tag', dir, '--labels', 'red,blue', '--out', join(dir, 'r.jsonl'), '--xmp', '--xmp-naming', 'replace', '--threshold', '0');
  assert.equal(r.code, 1);
  assert.ok(existsSync(join(dir, 'photo.xmp')));
  assert.ok(!existsSync(`${jpg}.xmp`));
  assert.ok(r.stderr.includes(`${join(dir, 'photo.xmp')}: is also the sidecar of ${jpg}: skipped`), r.stderr);
  assert.deepEqual((exiftoolRead(join(dir, 'photo.xmp'))['XMP-dc:Subject'] as string[]).sort(), ['blue', 'red']);
  assert.match(
    cli('tag', dir, '--labels', 'red', '--out', join(dir, 'r2.jsonl'), '--xmp', '--xmp-naming', 'adobe').stderr,
    /--xmp-naming must be append or replace/,
  );
});

test("a sidecar written in an earlier run stays its image's when a second image of that name arrives (RAW + JPEG)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xmp-later-'));
  const png = await image(join(dir, 'photo.png'), [20, 20, 220]);
  const args = ['--labels', 'red,blue', '--out', join(dir, 'r.jsonl'), '--xmp', '--xmp-naming', 'replace', '--threshold', '0'];
  assert.equal(cli('tag', dir, ...args).code, 0);
  const before = sha(join(dir, 'photo.xmp'));
  const jpg = await image(join(dir, 'photo.jpg'), [220, 20, 20]);
  const r = cli('tag', dir, ...args);
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`${join(dir, 'photo.xmp')}: is also the sidecar of ${png}: skipped`), r.stderr);
  assert.ok(!r.stderr.includes(`sidecar of ${jpg}`), r.stderr);
  assert.equal(sha(join(dir, 'photo.xmp')), before, 'the earlier image keeps its sidecar');
});

test("other tools' keywords that look like numbers are kept as written", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xmp-numeric-'));
  const jpg = await image(join(dir, 'a.jpg'), [220, 20, 20]);
  exiftoolWrite(`${jpg}.xmp`, { 'XMP-dc:Subject': ['1.50', '1e3', 'film'] });
  const r = cli('tag', jpg, '--labels', 'red', '--out', join(dir, 'r.jsonl'), '--xmp', '--threshold', '0');
  assert.equal(r.code, 0, r.stderr);
  // Read with every value quoted, so exiftool's own JSON does not turn "1.50" into 1.5 on the way.
  const q = spawnSync('perl', [EXIFTOOL, '-json', '-api', 'StructFormat=JSONQ', '-XMP-dc:Subject', `${jpg}.xmp`], { encoding: 'utf8' });
  assert.equal(q.status, 0, q.stderr);
  const subject = (JSON.parse(q.stdout) as { Subject: string[] }[])[0]!.Subject;
  assert.deepEqual([...subject].sort(), ['1.50', '1e3', 'film', 'red'].sort());
});

test('an unwritable sidecar, one that is not XMP and one cut short are named and skipped (left untouched), the rest goes on, exit 1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xmp-bad-'));
  const a = await image(join(dir, 'a.png'), [220, 20, 20]);
  const b = await image(join(dir, 'b.png'), [20, 20, 220]);
  const c = await image(join(dir, 'c.png'), [20, 200, 20]);
  const d = await image(join(dir, 'd.png'), [200, 200, 20]);
  mkdirSync(`${a}.xmp`); // a folder in the way
  writeFileSync(`${b}.xmp`, 'these are my notes, not XMP\n');
  // A sidecar cut short (a tool crashed while writing it): XMP that does not close.
  exiftoolWrite(`${d}.xmp`, { 'XMP-dc:Title': 'half' });
  const whole = readFileSync(`${d}.xmp`, 'utf8');
  const cut = whole.slice(0, whole.indexOf('</rdf:RDF>'));
  writeFileSync(`${d}.xmp`, cut);
  const out = join(dir, 'r.jsonl');
  const r = cli('tag', dir, '--labels', 'red,blue,green', '--out', out, '--xmp', '--threshold', '0');
  assert.equal(r.code, 1);
  assert.ok(r.stderr.includes(`${a}.xmp: `) && /a\.png\.xmp: .*skipped/.test(r.stderr), r.stderr);
  assert.ok(r.stderr.includes(`${b}.xmp: not valid XMP`) && /left untouched/.test(r.stderr), r.stderr);
  assert.ok(r.stderr.includes(`${d}.xmp: not valid XMP (XMP format error`), r.stderr);
  assert.match(r.stderr, /1 tagged, 0 skipped .*, 3 failed/);
  assert.equal(readFileSync(`${b}.xmp`, 'utf8'), 'these are my notes, not XMP\n');
  assert.equal(readFileSync(`${d}.xmp`, 'utf8'), cut);
  assert.deepEqual((exiftoolRead(`${c}.xmp`)['XMP-dc:Subject'] as string[]).sort(), ['blue', 'green', 'red']);
  // Their records were not written, so the next run tries them again.
  assert.deepEqual(
    records(out).map((x) => x.path),
    [c],
  );
  const again = cli('tag', dir, '--labels', 'red,blue,green', '--out', out, '--xmp', '--threshold', '0');
  assert.match(again.stderr, /0 tagged, 1 skipped .*, 3 failed/);
});

after(() => {
  // Every exiftool the runs started has ended, and its work folder is gone.
  const left = readdirSync(tmpdir()).filter((f) => f.startsWith('clip-decoder-xmp-') && !workDirsBefore.has(f));
  assert.deepEqual(left, []);
  const running = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('clip-decoder-xmp-');
      } catch {
        return false;
      }
    });
  assert.deepEqual(running, [], 'no exiftool left running');
});
