// `embed-text` and `embed-image`: the CLIP encoder layer from the command line, to stdout; `embed --out EMB/`:
// a library's image embeddings as .npy shards for other tools (src/library/embed-library.ts), resumable.
import type { Command } from 'commander';
import { join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { shardName } from '../scale/shard.ts';
import { expandImageInputs } from '../util/images.ts';
import { addShardOptions, modelOrDefault, numberFlag, reportInputs, shardFlags } from './options.ts';
import { startLazyProgress, startProgress } from './progress.ts';
import { DEFAULT_TEMPLATES } from '../clip/prompts.ts';

function preview(v: Float32Array): string {
  let norm = 0;
  for (const x of v) norm += x * x;
  const head = Array.from(v.subarray(0, 4), (x) => x.toFixed(4)).join(' ');
  return `|e|=${Math.sqrt(norm).toFixed(4)}  [${head}${v.length > 4 ? ' …' : ''}]`;
}

export function registerEmbedCommands(program: Command): void {
  program
    .command('embed-text')
    .description('CLIP text embeddings of texts, or of labels through prompt templates (--labels)')
    .argument('<texts...>', 'texts (or labels with --labels)')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled model)')
    .option('--labels', 'treat the arguments as labels: fill prompt templates, ensemble, L2-normalise')
    .option(
      '-t, --template <template...>',
      `prompt template(s) with {label} (default: ${DEFAULT_TEMPLATES.map((t) => `"${t}"`).join(' ')})`,
    )
    .option('--no-normalize', 'with --labels: do not L2-normalise')
    .option('--json', 'write JSON lines {text, embedding} to stdout')
    .action(
      async (texts: string[], opts: { model?: string; labels?: boolean; template?: string[]; normalize: boolean; json?: boolean }) => {
        const [{ ClipModel }, { embedLabels }] = await Promise.all([import('../clip/model.ts'), import('../clip/prompts.ts')]);
        const model = await ClipModel.load(modelOrDefault(opts.model));
        try {
          const E = model.embedDim;
          const emb = opts.labels
            ? await embedLabels(model, texts, { templates: opts.template, normalize: opts.normalize })
            : await model.encodeTexts(texts);
          texts.forEach((text, i) => {
            const v = emb.subarray(i * E, (i + 1) * E);
            process.stdout.write(opts.json ? `${JSON.stringify({ text, embedding: Array.from(v) })}\n` : `${text}\t${preview(v)}\n`);
          });
        } finally {
          await model.dispose();
        }
      },
    );

  program
    .command('embed-image')
    .description('CLIP image embeddings (and optionally patch tokens) of image files or folders')
    .argument('<paths...>', 'image files or folders (walked recursively)')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled model)')
    .option('--json', 'write JSON lines {file, embedding} to stdout')
    .option('--tokens', 'with --json: include the patch tokens [T, C] as "tokens"')
    .option('--keep-cls', 'keep the CLS token among the patch tokens')
    .option('-b, --batch-size <n>', 'images per ONNX run', '16')
    .action(async (paths: string[], opts: { model?: string; json?: boolean; tokens?: boolean; keepCls?: boolean; batchSize: string }) => {
      const batchSize = numberFlag(opts.batchSize, '--batch-size', 'positive-integer');
      const inputs = expandImageInputs(paths);
      const { files, missing } = inputs;
      if (!reportInputs(inputs, 'embed')) return;
      let failures = missing.length;
      const { ClipModel } = await import('../clip/model.ts');
      const model = await ClipModel.load(modelOrDefault(opts.model), { keepCls: opts.keepCls });
      const progress = startProgress('embedding', files.length);
      try {
        for await (const r of model.encodeImages(files, { batchSize, onProgress: (d) => progress.update(d) })) {
          if (r.error) {
            failures++;
            progress.write(process.stderr, `clip-decoder: ${r.error.message}\n`);
            continue;
          }
          const file = String(r.source);
          if (opts.json) {
            const rec: Record<string, unknown> = { file, embedding: Array.from(r.imageEmbed) };
            if (opts.tokens) Object.assign(rec, { tokensShape: [model.numTokens, model.tokenDim], tokens: Array.from(r.tokens) });
            progress.write(process.stdout, `${JSON.stringify(rec)}\n`);
          } else {
            progress.write(process.stdout, `${file}\t${preview(r.imageEmbed)}\n`);
          }
        }
      } finally {
        progress.stop();
        await model.dispose();
      }
      if (failures > 0) {
        process.stderr.write(`clip-decoder: ${failures} of ${files.length + missing.length} inputs failed\n`);
        process.exitCode = 1;
      }
    });

  const embed = program
    .command('embed')
    .description(
      "image embeddings of a library into .npy shards + JSONL metadata (clip-retrieval's layout), resumable; sharded: OUT/shard-i-of-n/, then `embeddings merge OUT`",
    )
    .argument('<paths...>', 'image files or folders (walked recursively)')
    .option('-o, --out <dir>', 'output folder (required): img_emb/img_emb_0.npy, metadata/metadata_0.jsonl, ...')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled model)')
    .option('--tokens', 'also write the patch tokens [T, C] (patch_tokens/patch_tokens_0.npy)')
    .option('--keep-cls', 'keep the CLS token among the patch tokens')
    .option('--no-normalize', 'write the embeddings as the model gives them (default: L2-normalised, as clip-retrieval)')
    .option('--shard-size <n>', 'images per shard', '100000')
    .option('--force', 'embed every image again and start the folder anew')
    .option('-b, --batch-size <n>', 'images per ONNX run', '16');
  addShardOptions(embed).action(
    async (
      paths: string[],
      opts: {
        shard?: string;
        shardCount?: string;
        out: string;
        model?: string;
        tokens?: boolean;
        keepCls?: boolean;
        normalize: boolean;
        shardSize: string;
        force?: boolean;
        batchSize: string;
      },
    ) => {
      if (opts.out === undefined)
        throw new ClipDecoderError('INPUT_INVALID', 'embed needs --out <dir> (to print embeddings instead, use embed-image)', '--out');
      const out = opts.out;
      const batchSize = numberFlag(opts.batchSize, '--batch-size', 'positive-integer');
      const shardSize = numberFlag(opts.shardSize, '--shard-size', 'positive-integer');
      const shard = shardFlags(opts);
      const inputs = expandImageInputs(paths);
      if (!reportInputs(inputs, 'embed')) return;
      const [{ ClipModel }, { embedLibrary }] = await Promise.all([import('../clip/model.ts'), import('../library/embed-library.ts')]);
      const model = await ClipModel.load(modelOrDefault(opts.model), { keepCls: opts.keepCls });
      const progress = startLazyProgress('embedding');
      try {
        const s = await embedLibrary(model, inputs.files, {
          out,
          tokens: opts.tokens,
          normalize: opts.normalize,
          shardSize,
          force: opts.force,
          batchSize,
          shard,
          onProgress: (done, total) => progress.update(done, total),
        });
        progress.stop();
        for (const f of s.failures) process.stderr.write(`clip-decoder: ${f.message}\n`);
        const failed = s.failed + inputs.missing.length;
        const where = shard ? join(out, shardName(shard)) : out;
        process.stderr.write(`clip-decoder: ${s.done} embedded, ${s.skipped} skipped (already in ${where}), ${failed} failed\n`);
        if (failed > 0) process.exitCode = 1;
      } finally {
        progress.stop();
        await model.dispose();
      }
    },
  );
}
