// The process bench/kill9.ts kills: `clip-decoder train`'s library call (trainOnDataset: extract features, then
// train, with checkpoints), printing a line per committed extraction batch ("extract N") and per training step
// ("step N") so the parent knows how far it got when it killed it. Arguments: a JSON object of options.
import { trainOnDataset, type TrainRunOptions } from '../src/train/pipeline.ts';

const opts = JSON.parse(process.argv[2]!) as TrainRunOptions;
const out = (s: string) => process.stdout.write(`${s}\n`);
await trainOnDataset({
  ...opts,
  onExtractProgress: (done) => out(`extract ${done}`),
  onProgress: (p) => out(`step ${p.step}`),
  onLog: (line) => out(`log ${line}`),
});
out('finished');
