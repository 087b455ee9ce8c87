// Adds the SHA-256 digests (see src/train/checkpoint.ts) to checkpoints saved before they existed, without
// touching the weights: the data files stay byte-identical, only config.json gains a "digests" field (written
// atomically). Refuses a checkpoint that does not load, so digests are never recorded over damaged files.
//   node --import tsx tools/checkpoint-digests.ts models/pico-clip-decoder [more checkpoint folders...]
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { digestCheckpointFiles, loadCheckpoint } from '../src/train/checkpoint.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import { writeFileAtomic } from '../src/util/fs.ts';

for (const dir of process.argv.slice(2)) {
  const cfgPath = join(dir, 'config.json');
  const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown> & {
    weights: string;
    training?: { state: string };
    digests?: unknown;
  };
  await loadCheckpoint(dir, new TsMatmul(), { withTraining: Boolean(cfg.training), onWarning: () => {} });
  const files = [cfg.weights, ...(cfg.training ? [cfg.training.state] : [])];
  const digests = await digestCheckpointFiles(dir, files);
  const { savedAt, digests: _old, ...rest } = cfg;
  await writeFileAtomic(cfgPath, `${JSON.stringify({ ...rest, digests, savedAt }, null, 1)}\n`);
  await loadCheckpoint(dir, new TsMatmul(), {
    withTraining: Boolean(cfg.training),
    onWarning: (m) => {
      throw new Error(m);
    },
  });
  process.stdout.write(`${dir}: digests of ${files.join(', ')} recorded in config.json\n`);
}
