// A progress bar on stderr for long runs, shown only when stderr is a terminal (logs and pipes stay clean).
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total?: number): void;
  stop(): void;
}

export function startProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY || total <= 1) return { update() {}, stop() {} };
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

/** A training bar: steps, loss, rate and ETA; `log` prints a line above it without breaking it. */
export interface StepProgress {
  update(p: { step: number; totalSteps: number; startStep: number; loss: number }): void;
  log(line: string): void;
  stop(): void;
}

export function startStepProgress(label: string, stream: NodeJS.WriteStream = process.stderr): StepProgress {
  if (!stream.isTTY) return { update() {}, log: (line) => void stream.write(`${line}\n`), stop() {} };
  let bar: cliProgress.SingleBar | undefined;
  let t0 = 0;
  return {
    update({ step, totalSteps, startStep, loss }) {
      if (!bar) {
        bar = new cliProgress.SingleBar(
          { format: `${label} [{bar}] {value}/{total} steps | loss {loss} | {rate} steps/s | ETA {eta_formatted}`, stream, hideCursor: true, etaBuffer: 50 },
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
