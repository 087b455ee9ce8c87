// A progress bar on stderr for long runs, shown only when stderr is a terminal (logs and pipes stay clean).
import { createRequire } from 'node:module';
import type CliProgress from 'cli-progress';

// Loaded only when a bar is shown: most runs (pipes, --help) never pay for it.
const require = createRequire(import.meta.url);

export interface Progress {
  update(done: number, total?: number): void;
  stop(): void;
}

export function startProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY || total <= 1) return { update() {}, stop() {} };
  const cliProgress = require('cli-progress') as typeof CliProgress;
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {value}/{total} {percentage}% | {rate}/s | ETA {eta_formatted}`, stream, hideCursor: true, etaBuffer: 50 },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  bar.start(total, 0, { rate: '0.0' });
  return {
    update(done, newTotal) {
      if (newTotal !== undefined) bar.setTotal(newTotal);
      const rate = done / Math.max(1e-3, (Date.now() - t0) / 1000);
      bar.update(done, { rate: rate.toFixed(1) });
    },
    stop() {
      bar.stop();
    },
  };
}
