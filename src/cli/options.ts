// Flags shared by several commands, and the bundled default model.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ClipDecoderError } from '../errors.ts';

/** The repository's models/ folder (bundled models live there). */
export const MODELS_DIR = fileURLToPath(new URL('../../models/', import.meta.url));
export const DEFAULT_MODEL = `${MODELS_DIR}pico-clip`;

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
