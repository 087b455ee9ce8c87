// The real `clip-decoder serve` process, as a user starts it: spawned from bin/, on a free loopback port.
import { spawn, type ChildProcess } from 'node:child_process';

export interface ServeProcess {
  child: ChildProcess;
  /** The address it printed, e.g. http://127.0.0.1:41234. */
  url: string;
  /** Everything it wrote to stderr so far. */
  stderr: () => string;
}

/** Starts `clip-decoder serve --port 0 ...args` and resolves once it prints its address (at most 60 s). */
export async function startServe(args: readonly string[] = []): Promise<ServeProcess> {
  const child = spawn(process.execPath, ['bin/clip-decoder.js', 'serve', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8');
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve printed no address in 60 s: ${err}`)), 60_000);
    child.stderr!.on('data', (chunk: string) => {
      err += chunk;
      const m = /serving on (http:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before listening: ${err}`));
    });
  });
  return { child, url, stderr: () => err };
}
