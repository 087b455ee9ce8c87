#!/usr/bin/env node
// The `clip-decoder` command. Runs the TypeScript CLI through tsx's loader, so the package needs no build step;
// src/cli/main.ts only exports main(), so importing it (tests, other tools) runs nothing.
import { register } from 'tsx/esm/api';
register();
// A closed stdout (`clip-decoder tag … | head -1`) ends the run quietly, exit 0: the reader has what it wanted.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
const { main } = await import('../src/cli/main.ts');
process.exit(await main(process.argv));
