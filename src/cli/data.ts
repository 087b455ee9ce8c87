import type { Command } from 'commander';
// Placeholder: the dataset commands (`data emoji`, ...) are added by the datasets issue.
export function registerDataCommands(_program: Command): void {}
