import type { Command } from 'commander';
export function registerEmbedCommands(_program: Command): void {}
