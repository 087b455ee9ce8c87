// Child process for the kill -9 test: extracts features of the images listed in argv[3] into the cache argv[2],
// printing "progress N" after each batch so the parent knows when to kill it.
import { readFileSync } from 'node:fs';
import { ClipModel } from '../../src/clip/model.ts';
import { extractFeatures } from '../../src/features/extract.ts';

const [cacheDir, listFile] = process.argv.slice(2) as [string, string];
const items = JSON.parse(readFileSync(listFile, 'utf8')) as { id: string; path: string; extraViews?: number }[];
const model = await ClipModel.load('tests/fixtures/tiny-clip', { threads: 1 });
await extractFeatures(model, items, {
  cacheDir,
  datasetFingerprint: 'test-dataset',
  batchSize: 2,
  onProgress: (done) => process.stdout.write(`progress ${done}\n`),
});
process.stdout.write('finished\n');
