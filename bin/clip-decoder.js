#!/usr/bin/env node
// The installed command: runs the compiled CLI in dist/ (built by `npm run build`, which `npm ci` runs through
// the prepare script), so starting it costs no TypeScript compilation. src/cli/main.ts only exports main(), so
// importing it (tests, other tools) runs nothing.
import { main } from '../dist/cli/main.js';

// A closed stdout (`clip-decoder tag … | head -1`) ends the run quietly, exit 0: the reader has what it wanted.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
process.exit(await main(process.argv));
