// `cache merge`, `embeddings merge`, `results merge`: the shards of a sharded extract / embed / tag joined into
// the output an unsharded run writes (src/scale/merge.ts; docs/scale.md).
import type { Command } from 'commander';
import { startLazyProgress } from './progress.ts';

export function registerScaleCommands(program: Command): void {
  program
    .command('cache')
    .description('feature cache tools')
    .command('merge')
    .description(
      'join the shards of `extract --shard` (DIR/shard-i-of-n/) into one feature cache, checking they are one run, complete, each image once',
    )
    .argument('<dir>', 'the --cache folder the shards were extracted into')
    .option('-o, --out <dir>', 'merged cache folder (default: DIR itself, so `train --cache DIR` reads it)')
    .option('-d, --dataset <path>', 'also check the shards are of this dataset and hold exactly its images')
    .action(async (dir: string, o: { out?: string; dataset?: string }) => {
      const [{ mergeCacheShards }, { loadDataset }] = await Promise.all([import('../scale/merge.ts'), import('../data/load.ts')]);
      const progress = startLazyProgress('merging');
      try {
        const s = await mergeCacheShards(dir, {
          out: o.out,
          dataset: o.dataset === undefined ? undefined : loadDataset(o.dataset),
          onProgress: (d, t) => progress.update(d, t),
        });
        progress.stop();
        process.stderr.write(`clip-decoder: merged ${s.shards} shards, ${s.records} records, into ${s.out}\n`);
      } finally {
        progress.stop();
      }
    });

  program
    .command('embeddings')
    .description('embeddings folder tools')
    .command('merge')
    .description(
      'join the shards of `embed --out EMB --shard` (EMB/shard-i-of-n/) into one embeddings folder, checking they are one run, complete, each image once',
    )
    .argument('<dir>', 'the embed --out folder of the shards')
    .option('-o, --out <dir>', 'merged folder (default: EMB itself)')
    .action(async (dir: string, o: { out?: string }) => {
      const { mergeEmbeddingShards } = await import('../scale/merge.ts');
      const progress = startLazyProgress('merging');
      try {
        const s = await mergeEmbeddingShards(dir, { out: o.out, onProgress: (d, t) => progress.update(d, t) });
        progress.stop();
        process.stderr.write(`clip-decoder: merged ${s.shards} shards, ${s.records} images, into ${s.out}\n`);
      } finally {
        progress.stop();
      }
    });

  program
    .command('results')
    .description('results file tools')
    .command('merge')
    .description(
      'join the shards of `tag --out FILE --shard` (FILE.shards/shard-i-of-n/) into the results file FILE, checking they are one run, complete, each image once',
    )
    .argument('<file>', 'the tag --out results file')
    .action(async (file: string) => {
      const { mergeResultShards } = await import('../scale/merge.ts');
      const s = await mergeResultShards(file);
      process.stderr.write(`clip-decoder: merged ${s.shards} shards, ${s.records} records, into ${s.out}\n`);
    });
}
