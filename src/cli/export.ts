// `export-onnx` (the head's inference graph as an ONNX file) and `export-web` (a static page that tags in the
// browser): thin wrappers over src/head/export-onnx.ts and src/web/bundle.ts.
import type { Command } from 'commander';
import { DEFAULT_HEAD } from '../tagger/defaults.ts';
import { modelOrDefault } from './options.ts';
import { parseLabelList } from '../labels.ts';

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export function registerExportCommands(program: Command): void {
  program
    .command('export-onnx')
    .description("the head's inference graph as ONNX (inputs patch_tokens, label_embeds; outputs logits, probabilities, attention)")
    .option('--head <dir>', 'CLIP-Decoder head checkpoint (default: the bundled head)')
    .requiredOption('-o, --out <file>', 'the .onnx file to write')
    .option('--no-attention', 'leave out the attention output')
    .action(async (o: { head?: string; out: string; attention: boolean }) => {
      const { exportHeadOnnx } = await import('../head/export-onnx.ts');
      const { bytes } = await exportHeadOnnx({ head: o.head ?? DEFAULT_HEAD, out: o.out, attention: o.attention });
      process.stderr.write(`clip-decoder: wrote ${o.out} (${mb(bytes)}, opset 17)\n`);
    });

  program
    .command('export-web')
    .description('a static page that tags in the browser (onnxruntime-web): HTML, JS, the CLIP towers, the head, the tokenizer')
    .argument('<outdir>', 'folder to write the page into')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled pico-CLIP)')
    .option('--head <dir>', 'CLIP-Decoder head checkpoint (default: the bundled head; its calibration.json scores the page)')
    .option('--calibration <file>', "calibration file for this model and head instead of the head folder's calibration.json")
    .option('-l, --labels <a,b,c>', "labels pre-filled in the page (default: the head's first 8 trained labels)")
    .action(async (out: string, o: { model?: string; head?: string; calibration?: string; labels?: string }) => {
      const { exportWeb } = await import('../web/bundle.ts');
      const defaultLabels = o.labels === undefined ? undefined : parseLabelList(o.labels, { source: '--labels' });
      const r = await exportWeb({
        model: modelOrDefault(o.model),
        head: o.head ?? DEFAULT_HEAD,
        calibration: o.calibration,
        out,
        defaultLabels,
      });
      process.stderr.write(
        `clip-decoder: wrote ${r.files} files to ${out} (${mb(r.bytes)}); serve the folder over HTTP and open index.html ` +
          '(threads need the Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp headers)\n',
      );
    });
}
