// `serve`: the HTTP API and web page over a Tagger, on 127.0.0.1 unless told otherwise.
import type { Command } from 'commander';
import { ClipDecoderError } from '../errors.ts';
import { DEFAULT_LIMITS, type ServeLimits } from '../serve/limits.ts';
import { numberFlag } from './options.ts';

/** Each limit's flag; the defaults printed by --help are the library's. */
const LIMIT_FLAGS: [keyof ServeLimits, string, string][] = [
  ['maxBodyBytes', '--max-body <bytes>', 'largest request body / image'],
  ['maxBufferedBytes', '--max-buffered <bytes>', 'request bodies held in memory at once (default 2 × concurrency × max-body)'],
  ['maxPixels', '--max-pixels <n>', 'most pixels an image may decode to'],
  ['maxLabels', '--max-labels <n>', 'most labels per request'],
  ['maxLabelLength', '--max-label-length <n>', 'longest label, in characters'],
  ['maxConcurrent', '--concurrency <n>', 'requests tagged at once'],
  ['maxQueue', '--queue <n>', 'requests that may wait, bodies unread; more get 503'],
  ['deadlineMs', '--deadline <ms>', 'time from arrival to answer; past it 503'],
  ['bodyTimeoutMs', '--body-timeout <ms>', 'time to receive headers and body; past it 408'],
  ['maxRenderMs', '--max-render-ms <ms>', 'time to render one SVG; past it 413'],
  ['maxConnections', '--max-connections <n>', 'open connections; more are refused'],
];

/** commander's camel-cased option name for a flag ("--max-body <bytes>" → "maxBody"). */
function optionKey(flag: string): string {
  return flag
    .split(' ')[0]!
    .replace(/^--/, '')
    .replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
}

/** A listen failure as one line naming the flag at fault (exit 2), not a stack trace. */
function listenError(e: unknown, host: string, port: number): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE')
    return new ClipDecoderError(
      'BAD_PARAMETER',
      `--port ${port}: the address ${host}:${port} is already in use; pick another port (0 for any)`,
      '--port',
      { cause: e },
    );
  if (code === 'EACCES')
    return new ClipDecoderError(
      'BAD_PARAMETER',
      `--port ${port}: not allowed to bind ${host}:${port} (ports below 1024 need privileges)`,
      '--port',
      { cause: e },
    );
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL' || code === 'EINVAL') {
    return new ClipDecoderError(
      'BAD_PARAMETER',
      `--host ${host}: not an address of this machine (${code}); use 127.0.0.1, 0.0.0.0 or a local interface`,
      '--host',
      { cause: e },
    );
  }
  return e;
}

export function registerServeCommand(program: Command): void {
  const cmd = program
    .command('serve')
    .description('HTTP API (POST /v1/tag, GET /healthz), a web page at /, and at /web/ a page that tags in the browser')
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'port (0: any free port)', '8080')
    .option('-m, --model <path|id>', 'CLIP model folder (default: the bundled pico-CLIP)')
    .option(
      '--head <dir|none>',
      'CLIP-Decoder head checkpoint (default: the bundled head; its calibration.json, if any, is used); "none": plain CLIP',
    )
    .option('--calibration <file>', "calibration file for this model and head (or plain CLIP) instead of the folder's calibration.json");
  for (const [key, flag, what] of LIMIT_FLAGS) {
    cmd.option(flag, key === 'maxBufferedBytes' ? what : `${what} (default ${DEFAULT_LIMITS[key]})`);
  }
  cmd.action(
    async (o: Record<string, string | undefined> & { host: string; port: string; model?: string; head?: string; calibration?: string }) => {
      const port = numberFlag(o.port, '--port', 'non-negative-integer');
      if (port > 65535) throw new ClipDecoderError('BAD_PARAMETER', `--port must be 0–65535, got "${o.port}"`, '--port');
      const limits: Partial<ServeLimits> = {};
      for (const [key, flag] of LIMIT_FLAGS) {
        const raw = o[optionKey(flag)];
        if (raw !== undefined) limits[key] = numberFlag(raw, flag.split(' ')[0]!, 'positive-integer');
      }
      // Loaded here, not at the top, so other commands and --help do not pay for the server and the model.
      const [{ Tagger }, { buildServer }] = await Promise.all([import('../tagger/tagger.ts'), import('../serve/server.ts')]);
      const labelLimits = {
        maxLabels: limits.maxLabels ?? DEFAULT_LIMITS.maxLabels,
        maxLength: limits.maxLabelLength ?? DEFAULT_LIMITS.maxLabelLength,
      };
      const tagger = await Tagger.load({
        model: o.model,
        head: o.head,
        calibration: o.calibration,
        pixelLimit: limits.maxPixels,
        labelLimits,
      });
      const app = buildServer(tagger, { ...limits, onServerError: (line) => process.stderr.write(`${line}\n`) });
      let address: string;
      try {
        address = await app.listen({ host: o.host, port });
      } catch (e) {
        await app.close().catch(() => {});
        await tagger.dispose();
        throw listenError(e, o.host, port);
      }
      process.stderr.write(`clip-decoder: serving on ${address} (model ${tagger.model.id}; scoring: ${tagger.describeMode()})\n`);
      // The action resolves only once the server has closed: main() exits the process when it returns.
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.stderr.write('clip-decoder: shutting down\n');
          app
            .close()
            .then(() => tagger.dispose())
            .finally(resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    },
  );
}
