// A contact sheet of EmojiScenes for the docs: the first scenes of each kind (train, test, style-transfer test,
// P) whose members are all drawn in styles whose licence is not share-alike (OpenMoji and EmojiOne v1 are
// CC BY-SA: their renders are never committed).
//   node --import tsx tools/emojiscenes-sheet.ts /work/emojiscenes docs/images/emojiscenes-sheet.png
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import sharp from 'sharp';

const require = createRequire(import.meta.url);

interface Line {
  id: string;
  file: string;
  subset?: string;
  members: { style: string }[];
}

function shareAlike(style: string): boolean {
  const info = require(`@iconify-json/${style}/info.json`) as { license: { spdx?: string; title: string } };
  return /SA/.test(info.license.spdx ?? info.license.title);
}

async function main(): Promise<void> {
  const [dir, out, perRow = '8'] = process.argv.slice(2);
  if (!dir || !out) throw new Error('usage: emojiscenes-sheet.ts DATASET_DIR OUT.png [per-row]');
  const cols = Number(perRow);
  const read = (f: string) =>
    readFileSync(join(dir, f), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Line);
  const scenes = read('manifest.jsonl');
  const pretrain = read('pretrain-scenes.jsonl');
  const ok = new Map<string, boolean>();
  const allowed = (l: Line) => l.members.every((m) => !(ok.get(m.style) ?? ok.set(m.style, shareAlike(m.style)).get(m.style)));
  const rows = [
    scenes.filter((l) => l.id.startsWith('train-')),
    scenes.filter((l) => l.id.startsWith('test-')),
    scenes.filter((l) => l.subset === 'style-transfer'),
    pretrain,
  ].map((ls) => ls.filter(allowed).slice(0, cols));
  const S = (await sharp(join(dir, rows[0]![0]!.file)).metadata()).width!;
  const gap = 4;
  const composite = rows.flatMap((ls, r) => ls.map((l, c) => ({ input: join(dir, l.file), left: c * (S + gap), top: r * (S + gap) })));
  await sharp({ create: { width: cols * (S + gap) - gap, height: rows.length * (S + gap) - gap, channels: 3, background: '#ffffff' } })
    .composite(composite)
    .png({ compressionLevel: 9 })
    .toFile(out);
  process.stdout.write(`${out}: rows train, test, style-transfer test, P; ${composite.length} scenes of ${S} px\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
