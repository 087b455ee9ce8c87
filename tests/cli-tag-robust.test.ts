// `tag` against a careless or hostile user (issue 19): terminals, odd file names, FIFOs and devices, output
// folders that cannot be written, closed pipes, numbers and labels that only look right. Each test spawns the
// real CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainTinyHead, TINY_CLIP } from './helpers/tiny-head.ts';

const tiny = await trainTinyHead();
const [dogFace, pizza, sun, catFace] = tiny.images.map((i) => i.file) as [string, string, string, string];
const CLI = ['bin/clip-decoder.js', 'tag', '--model', TINY_CLIP, '--head', tiny.dir];

/** The line every run that loads the model writes first, saying how it scores (checked in calibrated-outputs.test.ts). */
const SCORING_LINE = /^clip-decoder: scoring: [^\n]+\n/m;

function tag(...args: string[]) {
  const r = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  // the messages under test, without the scoring line
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(SCORING_LINE, '') };
}

function tmp(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

function jsonl(stdout: string): { file: string; labels: Record<string, number> }[] {
  return stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Stderr is one line per message and never a stack trace. */
function assertNoTrace(stderr: string): void {
  assert.doesNotMatch(stderr, /^\s+at /m, stderr);
  assert.doesNotMatch(stderr, /Error:|node:internal/, stderr);
}

/**
 * What a terminal shows for bytes written to it: enough of a VT100 for readline's cursorTo (ESC[nG), clearLine
 * (ESC[0K, ESC[2K), cursor up (ESC[nA), carriage return and newline. Returns the screen's lines.
 */
function screen(raw: string): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '\x1b') {
      // biome-ignore lint/suspicious/noControlCharactersInRegex: parses the terminal's escape sequences
      const m = /^\x1b\[\??(\d*)(?:;\d*)?([A-Za-z])/.exec(raw.slice(i));
      if (!m) continue;
      i += m[0].length - 1;
      const n = m[1] === '' ? undefined : Number(m[1]);
      const line = lines[row]!;
      if (m[2] === 'G') col = (n ?? 1) - 1;
      else if (m[2] === 'A') row = Math.max(0, row - (n ?? 1));
      else if (m[2] === 'K' && (n ?? 0) === 0) line.length = Math.min(line.length, col);
      else if (m[2] === 'K' && n === 2) line.length = 0;
      continue;
    }
    if (c === '\r') col = 0;
    else if (c === '\n') {
      row++;
      col = 0;
      lines[row] ??= [];
    } else {
      const line = lines[row]!;
      while (line.length < col) line.push(' ');
      line[col++] = c;
    }
  }
  return lines.map((l) => l.join('').trimEnd());
}

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

test('on a terminal the table rows and the error lines stay whole beside the progress bar', {
  skip: !hasScript && 'needs script(1) from util-linux',
}, () => {
  const broken = join(tmp('tty'), 'broken.png');
  writeFileSync(broken, 'not a png');
  const files = [dogFace, pizza, broken, sun, catFace];
  // script(1) runs the CLI on a pseudo-terminal: stdout and stderr are the same TTY, as in a user's shell.
  const cmd = `stty cols 160 rows 40; ${[process.execPath, ...CLI, ...files, '--labels', 'dog,pizza', '--batch-size', '1'].join(' ')}`;
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /tagging \[/, 'the progress bar was drawn');
  const shown = screen(r.stdout);
  for (const f of [dogFace, pizza, sun, catFace]) {
    const row = shown.filter((l) => l.includes(f));
    assert.equal(row.length, 1, `one screen line for ${f}:\n${shown.join('\n')}`);
    assert.match(row[0]!, new RegExp(`^${f}\\s+(dog|pizza) 0\\.\\d{3}\\s+(dog|pizza) 0\\.\\d{3}$`), shown.join('\n'));
  }
  assert.ok(
    shown.includes(`clip-decoder: ${broken}: not a readable image (Input buffer contains unsupported image format)`),
    shown.join('\n'),
  );
  assert.ok(shown.includes('clip-decoder: 1 of 5 inputs failed'), shown.join('\n'));
});

test('--explain: one overlay per image and label, names unique and readable (猫,犬,a/b,a_b,😀 on 5 images → 25 files)', () => {
  const other = join(tmp('same-name'), 'dog-face.png'); // the same basename as dogFace, in another folder
  copyFileSync(dogFace, other);
  const out = tmp('explain');
  const r = tag(dogFace, pizza, sun, catFace, other, '--labels', '猫,犬,a/b,a_b,😀', '--explain', out, '--format', 'jsonl');
  assert.equal(r.code, 0, r.stderr);
  const files = readdirSync(out).sort();
  assert.equal(files.length, 25, files.join('\n'));
  const first = files.filter((f) => f.startsWith('0000-dog-face--'));
  assert.deepEqual(first, [
    '0000-dog-face--%F0%9F%98%80.png',
    '0000-dog-face--a%2Fb.png',
    '0000-dog-face--a%5Fb.png',
    '0000-dog-face--犬.png',
    '0000-dog-face--猫.png',
  ]);
  assert.equal(files.filter((f) => f.startsWith('0004-dog-face--')).length, 5);
  for (const f of files) assert.ok(statSync(join(out, f)).size > 100, f);
});

test('--explain onto a file, or an overlay that cannot be written: one line naming the path, exit 2', () => {
  const dir = tmp('explain-bad');
  const file = join(dir, 'taken');
  writeFileSync(file, 'x');
  const a = tag(dogFace, '--labels', 'dog', '--explain', file);
  assert.equal(a.code, 2);
  assert.equal(
    a.stderr,
    `clip-decoder: --explain ${file}: cannot create or write the folder (EEXIST: file already exists: a file is in the way of the folder)\n`,
  );
  const b = tag(dogFace, '--labels', 'dog', '--explain', join(file, 'sub'));
  assert.equal(b.code, 2);
  assert.equal(
    b.stderr,
    `clip-decoder: --explain ${join(file, 'sub')}: cannot create or write the folder (ENOTDIR: not a directory: a file is in the way of the folder)\n`,
  );
  // A folder where the overlay file should go: the write fails whoever runs the test (root included).
  const out = join(dir, 'out');
  mkdirSync(join(out, '0000-dog-face--dog.png'), { recursive: true });
  const c = tag(dogFace, '--labels', 'dog', '--explain', out, '--format', 'jsonl');
  assert.equal(c.code, 2);
  assert.equal(
    c.stderr,
    `clip-decoder: --explain: cannot write ${join(out, '0000-dog-face--dog.png')} (EISDIR: illegal operation on a directory)\n`,
  );
  assert.deepEqual(readdirSync(out), ['0000-dog-face--dog.png'], 'no temporary file left behind');
});

// EACCES needs a user the permissions apply to: root runs the CLI as nobody through setpriv(1).
const asRoot = process.getuid?.() === 0;
const canDropRoot = asRoot && spawnSync('setpriv', ['--version']).status === 0;

test('--explain into a folder without write permission: one line naming it, exit 2', {
  skip: asRoot && !canDropRoot && 'root without setpriv(1)',
}, () => {
  const dir = tmp('explain-ro');
  const ro = join(dir, 'ro');
  mkdirSync(ro, { mode: 0o555 });
  for (const d of [dir, tiny.dir, join(tiny.dir, '..')]) chmodSync(d, 0o755); // mkdtemp's 0700 would hide them from nobody
  const args = [...CLI, dogFace, '--labels', 'dog', '--explain', ro];
  const r = asRoot
    ? spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, ...args], {
        encoding: 'utf8',
        timeout: 60_000,
      })
    : spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.stderr, `clip-decoder: --explain ${ro}: cannot create or write the folder (EACCES: permission denied)\n`);
  assert.equal(r.status, 2);
});

test('a closed stdout (tag … | head -1) ends quietly with exit 0', () => {
  // 400 inputs: head has exited long before the last lines are written, so those writes meet a closed pipe.
  const many = Array.from({ length: 100 }, () => [dogFace, pizza, sun, catFace]).flat();
  const cmd = `${[process.execPath, ...CLI, ...many, '--labels', 'dog', '--format', 'jsonl'].join(' ')} | head -1; echo "rc=\${PIPESTATUS[0]}"`;
  const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8', timeout: 60_000 });
  const [first, rc, ...rest] = r.stdout.split('\n');
  assert.equal(JSON.parse(first!).file, dogFace);
  assert.equal(rc, 'rc=0');
  assert.deepEqual(rest, ['']);
  assert.match(r.stderr, /^clip-decoder: scoring: [^\n]+\n$/, 'nothing but the line saying how it scores');
});

test('FIFOs and devices: skipped in folders with a warning, refused by name; --max-file-bytes; the good images are tagged', () => {
  const dir = tmp('fifo');
  copyFileSync(dogFace, join(dir, 'a.png'));
  assert.equal(spawnSync('mkfifo', [join(dir, 'b.png')]).status, 0);
  const named = join(tmp('fifo-named'), 'c.png');
  assert.equal(spawnSync('mkfifo', [named]).status, 0);
  const size = statSync(pizza).size;
  const big = join(tmp('big'), 'big.png');
  writeFileSync(big, Buffer.concat([readFileSync(pizza), Buffer.alloc(1)]));
  const r = tag(dir, named, '/dev/zero', pizza, big, '--labels', 'dog,pizza', '--format', 'jsonl', '--max-file-bytes', String(size));
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(
    jsonl(r.stdout).map((l) => l.file),
    [join(dir, 'a.png'), pizza],
  );
  assert.equal(
    r.stderr,
    [
      `clip-decoder: warning: ${join(dir, 'b.png')}: a FIFO (named pipe), not a regular file: skipped`,
      `clip-decoder: ${named}: a FIFO (named pipe), not a regular file: only regular files are read`,
      `clip-decoder: /dev/zero: a character device, not a regular file: only regular files are read`,
      `clip-decoder: ${big}: ${size + 1} bytes exceeds the file-size limit of ${size} bytes (raise it with --max-file-bytes or maxFileBytes)`,
      `clip-decoder: 3 of 5 inputs failed`,
      '',
    ].join('\n'),
  );
});

test('nothing to tag: an empty folder, or one of unsupported types, is named and exits 1', () => {
  const empty = tmp('empty');
  const odd = tmp('odd');
  writeFileSync(join(odd, 'a.heic'), 'x');
  writeFileSync(join(odd, 'b.bmp'), 'x');
  const r = tag(empty, odd, '--labels', 'dog');
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  const supported = '.jpg, .jpeg, .png, .webp, .gif, .svg, .avif, .tif, .tiff';
  assert.equal(
    r.stderr,
    [
      `clip-decoder: ${empty}: no images to tag: the folder holds no files; supported: ${supported}`,
      `clip-decoder: ${odd}: no images to tag: 2 files of other types (.bmp, .heic); supported: ${supported}`,
      'clip-decoder: nothing to tag: none of the 2 inputs yields an image',
      '',
    ].join('\n'),
  );
});

test('a file name that is not UTF-8 is named as such, and the images beside it are tagged', () => {
  const dir = tmp('latin1');
  copyFileSync(dogFace, join(dir, 'good.png'));
  writeFileSync(Buffer.concat([Buffer.from(`${dir}/caf`), Buffer.from([0xe9]), Buffer.from('.png')]), readFileSync(dogFace));
  const r = tag(dir, '--labels', 'dog', '--format', 'jsonl');
  assert.equal(r.code, 1);
  assert.deepEqual(
    jsonl(r.stdout).map((l) => l.file),
    [join(dir, 'good.png')],
  );
  assert.equal(
    r.stderr,
    `clip-decoder: ${dir}/caf\\xE9.png: the name is not valid UTF-8, so it cannot be opened by name: rename it (for example with convmv)\n` +
      'clip-decoder: 1 of 2 inputs failed\n',
  );
});

test('--labels-file: only a line starting with # is a comment (C#, F# minor are labels)', () => {
  const lf = join(tmp('labels'), 'labels.txt');
  writeFileSync(lf, '\uFEFF# chords\r\nC#\r\nF# minor\n   # indented comment\n\ndog\n');
  const r = tag(dogFace, '--labels-file', lf, '--format', 'jsonl');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(Object.keys(jsonl(r.stdout)[0]!.labels).sort(), ['C#', 'F# minor', 'dog']);
});

test('numeric flags accept only plain decimal numbers; bad label lists name the label', () => {
  const cases: [string[], string][] = [
    [['--threshold', ''], 'clip-decoder: --threshold must be a probability in [0, 1], got ""\n'],
    [['--threshold', '0x1'], 'clip-decoder: --threshold must be a probability in [0, 1], got "0x1"\n'],
    [['--top', '1e1'], 'clip-decoder: --top must be a positive integer, got "1e1"\n'],
    [['--batch-size', '2.5'], 'clip-decoder: --batch-size must be a positive integer, got "2.5"\n'],
    [['--max-file-bytes', '0x10'], 'clip-decoder: --max-file-bytes must be a positive integer, got "0x10"\n'],
  ];
  for (const [flags, stderr] of cases) {
    const r = tag(dogFace, '--labels', 'dog', ...flags);
    assert.equal(r.code, 2, flags.join(' '));
    assert.equal(r.stderr, stderr);
  }
  const dup = tag(dogFace, '--labels', 'dog, cat,,dog');
  assert.equal(dup.code, 2);
  assert.equal(dup.stderr, 'clip-decoder: --labels: label "dog" appears twice\n');
  assertNoTrace(dup.stderr);
});
