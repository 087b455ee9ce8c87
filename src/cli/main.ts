// The `clip-decoder` command line: each command lives in its own module and only parses flags, then calls
// the library. Errors the library raises on purpose print one line and exit 2; anything else is a bug.
// Importing this module runs nothing: bin/clip-decoder.js calls main().
import { Command } from 'commander';
import { ClipDecoderError } from '../errors.ts';
import { registerEmbedCommands } from './embed.ts';
import { registerDataCommands } from './data.ts';
import { registerEvalCommand } from './eval.ts';
import { registerExportCommands } from './export.ts';
import { registerTagCommand } from './tag.ts';
import { registerServeCommand } from './serve.ts';
import { registerTrainCommands } from './train.ts';
import { registerScaleCommands } from './scale.ts';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('clip-decoder')
    .description('Open-vocabulary multi-label image tagging with CLIP-Decoder')
    .showHelpAfterError('(run with --help for usage)');
  registerTagCommand(program);
  registerServeCommand(program);
  registerTrainCommands(program);
  registerScaleCommands(program);
  registerEmbedCommands(program);
  registerDataCommands(program);
  registerEvalCommand(program);
  registerExportCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof ClipDecoderError) {
      process.stderr.write(`clip-decoder: ${e.message}\n`);
      return 2;
    }
    // commander's own exits (help, version, usage errors) carry an exitCode.
    const code = (e as { exitCode?: unknown }).exitCode;
    if (typeof code === 'number') return code === 1 ? 2 : code;
    throw e;
  }
}
