#!/usr/bin/env node
// The installed command: runs the compiled CLI in dist/ (built by `npm run build`, which `npm ci` runs through
// the prepare script), so starting it costs no TypeScript compilation.
import { main } from '../dist/cli/main.js';

process.exit(await main(process.argv));
