import type { Command } from 'commander';
// Placeholder: the `eval` command is added by the datasets/evaluation issue.
export function registerEvalCommand(_program: Command): void {}
