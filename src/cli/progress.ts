// A progress bar on stderr for long runs, shown only when stderr is a terminal (logs and pipes stay clean).
// While it is shown, every line the command prints goes through `write`, which clears the bar's line, prints,
// and redraws the bar below: otherwise a table row on stdout would continue the bar's line on the same
// terminal, and the bar's next redraw (carriage return, clear to the right) would overwrite it.
import { createRequire } from 'node:module';
import type CliProgress from 'cli-progress';

// Loaded only when a bar is shown: most runs (pipes, --help) never pay for it.
const require = createRequire(import.meta.url);
const loadCliProgress = () => require('cli-progress') as typeof CliProgress;

export interface Progress {
  update(done: number, total?: number): void;
  /** Prints text (whole lines) to `stream` without mixing it with the bar. */
  write(stream: NodeJS.WritableStream, text: string): void;
  stop(): void;
}

export function startProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY || total <= 1) return { update() {}, write: (s, text) => void s.write(text), stop() {} };
  const cliProgress = loadCliProgress();
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} {percentage}% | {rate}/s | ETA {eta_formatted}`,
      stream,
      hideCursor: true,
      etaBuffer: 50,
      forceRedraw: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  // forceRedraw: after `write` cleared its line the bar must be drawn again even though its text is unchanged.
  let active = true;
  bar.start(total, 0, { rate: '0.0' });
  return {
    update(done, newTotal) {
      if (newTotal !== undefined) bar.setTotal(newTotal);
      const rate = done / Math.max(1e-3, (Date.now() - t0) / 1000);
      bar.update(done, { rate: rate.toFixed(1) });
    },
    write(s, text) {
      // Output redirected away from the terminal cannot mix with the bar.
      if (!active || (s !== stream && !(s as NodeJS.WriteStream).isTTY)) {
        s.write(text);
        return;
      }
      stream.write('\r\x1b[2K'); // to column 0, clear the whole line
      s.write(text);
      bar.render();
    },
    stop() {
      active = false;
      bar.stop();
    },
  };
}

/** A training bar: steps, loss, rate and ETA; `log` prints a line above it without breaking it. */
export interface StepProgress {
  update(p: { step: number; totalSteps: number; startStep: number; loss: number }): void;
  log(line: string): void;
  stop(): void;
}

export function startStepProgress(label: string, stream: NodeJS.WriteStream = process.stderr): StepProgress {
  if (!stream.isTTY) return { update() {}, log: (line) => void stream.write(`${line}\n`), stop() {} };
  let bar: CliProgress.SingleBar | undefined;
  let t0 = 0;
  return {
    update({ step, totalSteps, startStep, loss }) {
      if (!bar) {
        const cliProgress = loadCliProgress();
        bar = new cliProgress.SingleBar(
          {
            format: `${label} [{bar}] {value}/{total} steps | loss {loss} | {rate} steps/s | ETA {eta_formatted}`,
            stream,
            hideCursor: true,
            etaBuffer: 50,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(totalSteps, startStep, { loss: '-', rate: '0.0' });
        t0 = Date.now();
      }
      // the rate of this process's steps (a resumed run's earlier steps took no time here)
      const rate = (step - startStep) / Math.max(1e-3, (Date.now() - t0) / 1000);
      bar.update(step, { loss: loss.toFixed(4), rate: rate.toFixed(1) });
    },
    log(line) {
      if (!bar) return void stream.write(`${line}\n`);
      stream.write(`\r\x1b[2K${line}\n`);
      (bar as unknown as { render(force: boolean): void }).render(true); // redraw the bar below the line just written
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}

/** A bar whose total is known only at the first update (a library run learns it after skipping what is done). */
export function startLazyProgress(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  let bar: Progress | undefined;
  return {
    update(done, total) {
      bar ??= startProgress(label, total ?? done, stream);
      bar.update(done, total);
    },
    write: (s, text) => (bar ? bar.write(s, text) : void s.write(text)),
    stop: () => bar?.stop(),
  };
}
