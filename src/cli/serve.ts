// `serve`: the HTTP API and web page over a Tagger, on 127.0.0.1 unless told otherwise.
import type { Command } from 'commander';
import { ClipDecoderError } from '../errors.ts';
import { positiveIntFlag } from './options.ts';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('HTTP API (POST /v1/tag, GET /healthz) and a web page at /')
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'port', '8080')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled pico-CLIP)')
    .option('--head <dir>', 'CLIP-Decoder head checkpoint (default: the bundled head)')
    .option('--max-body <bytes>', 'largest request body', String(20 * 1024 * 1024))
    .option('--max-labels <n>', 'most labels per request', '1000')
    .option('--concurrency <n>', 'requests tagged at once', '2')
    .option('--queue <n>', 'requests that may wait; more get 503', '32')
    .action(async (o: { host: string; port: string; model?: string; head?: string; maxBody: string; maxLabels: string; concurrency: string; queue: string }) => {
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ClipDecoderError('INPUT_INVALID', `--port must be 0–65535, got "${o.port}"`, '--port');
      // Loaded here, not at the top, so other commands and --help do not pay for the server and the model.
      const [{ Tagger }, { buildServer }] = await Promise.all([import('../tagger/tagger.ts'), import('../serve/server.ts')]);
      const tagger = await Tagger.load({ model: o.model, head: o.head });
      const app = buildServer(tagger, {
        maxBodyBytes: positiveIntFlag(o.maxBody, '--max-body'),
        maxLabels: positiveIntFlag(o.maxLabels, '--max-labels'),
        maxConcurrent: positiveIntFlag(o.concurrency, '--concurrency'),
        maxQueue: positiveIntFlag(o.queue, '--queue'),
      });
      const address = await app.listen({ host: o.host, port });
      process.stderr.write(`clip-decoder: serving on ${address} (model ${tagger.model.id})\n`);
      // The action resolves only once the server has closed: main() exits the process when it returns.
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.stderr.write('clip-decoder: shutting down\n');
          app.close().then(() => tagger.dispose()).finally(resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
