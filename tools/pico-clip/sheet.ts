// A contact sheet of corpus images (64 of them, every `step`-th from `start`), to eyeball a render:
//   node --import tsx tools/pico-clip/sheet.ts /work/pico/c64/images.u8 64 0 100 /tmp/sheet.png
import { readFileSync } from 'node:fs';
import sharp from 'sharp';

async function main(): Promise<void> {
  const [file, size, start, step, out] = process.argv.slice(2);
  const S = Number(size);
  const buf = readFileSync(file!); // [N, S, S, 3] uint8
  const n = 64;
  const cols = 16;
  const sheet = Buffer.alloc(cols * S * (n / cols) * S * 3, 255);
  for (let k = 0; k < n; k++) {
    const idx = Number(start) + k * Number(step);
    if ((idx + 1) * S * S * 3 > buf.length) break;
    const r = Math.floor(k / cols);
    const c = k % cols;
    for (let y = 0; y < S; y++)
      buf.copy(sheet, ((r * S + y) * cols * S + c * S) * 3, (idx * S * S + y * S) * 3, (idx * S * S + y * S + S) * 3);
  }
  await sharp(sheet, { raw: { width: cols * S, height: (n / cols) * S, channels: 3 } })
    .png()
    .toFile(out!);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
