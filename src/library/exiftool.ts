// One exiftool process (the Perl ExifTool of the `exiftool-vendored.pl` package, run by Debian's perl) kept
// open with `-stay_open True -@ -`: each command is its arguments one per line then `-executeN`; exiftool
// answers on stdout up to `{readyN}`, and `-echo4 {readyN}` marks the end of its stderr for that command.
// Arguments travel one per line, so none may hold a newline: callers pass only paths they made themselves and
// tag values through a JSON file (-json=FILE).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createRequire } from 'node:module';
import { ClipDecoderError } from '../errors.ts';

export interface ExifToolOutput {
  stdout: string;
  stderr: string;
}

export class ExifToolProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private stdout = '';
  private stderr = '';
  private seq = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private exited: Error | undefined;
  private wake: (() => void) | undefined;

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.child = child;
    child.stdout.setEncoding('utf8').on('data', (s: string) => ((this.stdout += s), this.wake?.()));
    child.stderr.setEncoding('utf8').on('data', (s: string) => ((this.stderr += s), this.wake?.()));
    const gone = (e: Error) => ((this.exited = e), this.wake?.());
    child.on('error', gone);
    child.stdin.on('error', gone); // EPIPE once exiftool is gone: reported by the next run()
    child.on('exit', (code, signal) => gone(new Error(`exiftool exited (${signal ?? `code ${code}`})`)));
  }

  /** Starts exiftool with the given -config file (user-defined tags), or none. */
  static start(config?: string): ExifToolProcess {
    const exiftool = createRequire(import.meta.url)('exiftool-vendored.pl') as string;
    const args = [exiftool, ...(config ? ['-config', config] : []), '-stay_open', 'True', '-@', '-'];
    const child = spawn('perl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    return new ExifToolProcess(child);
  }

  /** Runs one command (its arguments, none with a newline); commands run one at a time, in call order. */
  run(args: readonly string[]): Promise<ExifToolOutput> {
    const next = this.queue.then(() => this.runNow(args));
    this.queue = next.catch(() => {});
    return next;
  }

  private async runNow(args: readonly string[]): Promise<ExifToolOutput> {
    if (args.some((a) => /[\r\n]/.test(a))) throw new Error('exiftool arguments cannot hold a newline');
    const n = ++this.seq;
    const mark = `{ready${n}}`;
    this.child.stdin.write(`${[...args, '-echo4', mark, `-execute${n}`].join('\n')}\n`);
    for (;;) {
      const o = this.stdout.indexOf(mark);
      const e = this.stderr.indexOf(mark);
      if (o >= 0 && e >= 0) {
        const out = { stdout: this.stdout.slice(0, o), stderr: this.stderr.slice(0, e) };
        this.stdout = this.stdout.slice(o + mark.length).replace(/^\r?\n/, '');
        this.stderr = this.stderr.slice(e + mark.length).replace(/^\r?\n/, '');
        return out;
      }
      if (this.exited)
        throw new ClipDecoderError(
          'INPUT_INVALID',
          `--xmp: exiftool is not running (${this.exited.message}); it needs Perl (Debian: apt-get install perl)`,
          '--xmp',
        );
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Asks exiftool to exit and waits for it (killed after 5 s). */
  async end(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end('-stay_open\nFalse\n');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(timer);
  }
}
