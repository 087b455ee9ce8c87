// The EmojiScenes builder's defaults, in a module of their own so that `--help` can show them without loading
// the builder (sharp, resvg, the emoji data).
export const SCENES_DEFAULTS = {
  size: 128,
  seed: 0,
  trainScenes: 6000,
  valScenes: 1000,
  testScenes: 2000,
  styleScenes: 600,
  pretrainScenes: 6000,
  testStyle: 'fxemoji',
  benchmarkFraction: 0.5,
  minTeach: 10,
  minPositives: 8,
  minUnseen: 40,
  testFraction: 0.3,
  valFraction: 0.15,
  maxOverlap: 0.15,
  singleStyles: [] as readonly string[],
} as const;
