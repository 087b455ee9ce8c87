// Flags shared by several commands, and the bundled default model.
import { existsSync } from 'node:fs';
import { ClipDecoderError } from '../errors.ts';
import { DEFAULT_MODEL } from '../tagger/defaults.ts';

/** The --model value, or the bundled model when none is given. */
export function modelOrDefault(model: string | undefined): string {
  if (model) return model;
  if (!existsSync(DEFAULT_MODEL)) {
    throw new ClipDecoderError('MODEL_NOT_FOUND', `no --model given and the bundled model ${DEFAULT_MODEL} is not there: pass --model <CLIP folder>`, '--model');
  }
  return DEFAULT_MODEL;
}

export function positiveIntFlag(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new ClipDecoderError('INPUT_INVALID', `${flag} must be a positive integer, got "${value}"`, flag);
  return n;
}
