// SVG uploads are rendered in a child process with a time limit. librsvg cannot be interrupted (sharp's
// timeout() is not checked while an SVG renders: 1,000 blurred circles took 12 s with a 1 s timeout), so a work
// bomb would hold a tagging slot and a core for as long as it likes; a child can be killed.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import sharp, { type Metadata } from 'sharp';
import { ClipDecoderError } from '../errors.ts';
import { svgDensity, type PreprocessConfig } from '../clip/preprocess.ts';

const SHARP_URL = pathToFileURL(createRequire(import.meta.url).resolve('sharp')).href;

// The child: SVG on stdin, density and pixel limit in argv, an uncompressed PNG (alpha kept) on stdout. It says
// READY on stderr once sharp has loaded: the render time limit starts there, not at the process's start.
const READY = 'clip-decoder-svg-ready';
const STARTUP_MS = 15_000;
const CHILD = `
const { default: sharp } = await import(process.argv[1]);
process.stderr.write('${READY}\\n');
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const png = await sharp(Buffer.concat(chunks), { density: Number(process.argv[2]), limitInputPixels: Number(process.argv[3]) })
  .png({ compressionLevel: 0 }).toBuffer();
process.stdout.write(png);
`;

/** True when the bytes look like SVG/XML text (sharp's own sniffing decides for the rest). */
export function looksLikeSvg(data: Uint8Array): boolean {
  const head = Buffer.from(data.subarray(0, 512))
    .toString('utf8')
    .replace(/^\uFEFF/, '')
    .trimStart();
  return head.startsWith('<');
}

/**
 * Renders an SVG to PNG at the density the library's preprocessing would use, killing the renderer after
 * `timeoutMs`. Non-SVG input is returned unchanged.
 */
export async function rasteriseSvg(data: Uint8Array, cfg: PreprocessConfig, pixelLimit: number, timeoutMs: number): Promise<Uint8Array> {
  if (!looksLikeSvg(data)) return data;
  let meta: Metadata;
  try {
    meta = await sharp(data, { limitInputPixels: false }).metadata();
  } catch {
    return data; // not an image sharp reads: the library names the error
  }
  if (meta.format !== 'svg') return data;
  const density = svgDensity(meta.width ?? 0, meta.height ?? 0, cfg);
  const scale = density / 72;
  if ((meta.width ?? 0) * (meta.height ?? 0) * scale * scale > pixelLimit) {
    throw new ClipDecoderError('IMAGE_TOO_LARGE', `the SVG renders to more than ${pixelLimit} pixels (--max-pixels)`, '--max-pixels');
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, SHARP_URL, String(density), String(pixelLimit)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    let timedOut = false;
    let ready = false;
    // Until READY, only a bound on the start-up (a stuck start is an internal failure, not the SVG's fault).
    let timer = setTimeout(() => child.kill('SIGKILL'), STARTUP_MS);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      err = (err + c).slice(-2000);
      if (!ready && err.includes(READY)) {
        ready = true;
        err = err.replace(`${READY}\n`, '');
        clearTimeout(timer);
        timer = setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, timeoutMs);
      }
    });
    child.stdin.on('error', () => {}); // a killed child closes its stdin early
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new ClipDecoderError('INTERNAL', `cannot start the SVG renderer: ${e.message}`, undefined, { cause: e }));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(
          new ClipDecoderError(
            'IMAGE_TOO_COMPLEX',
            `the SVG took more than ${timeoutMs} ms to render (--max-render-ms)`,
            '--max-render-ms',
          ),
        );
      } else if (!ready) {
        reject(
          new ClipDecoderError('INTERNAL', `the SVG renderer did not start within ${STARTUP_MS} ms (exit ${code}): ${err.slice(-200)}`),
        );
      } else if (code !== 0) {
        const why = /Error: (.*)/.exec(err)?.[1] ?? `renderer exited with ${code}`;
        reject(new ClipDecoderError('IMAGE_INVALID', `not a readable SVG (${why})`));
      } else resolve(Buffer.concat(out));
    });
    child.stdin.end(data);
  });
}
