// Turns a --model argument into a local folder: an existing path is used as it is; a hub id ("owner/name") is
// looked up in transformers.js's cache and, where a network exists, downloaded into it. Offline, a hub id that
// is not cached fails at once with a message that says how to point at a local folder.
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { REQUIRED_FILES } from './folder.ts';

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

export interface ResolveOptions {
  /** Download missing hub models (default: true unless HF_HUB_OFFLINE=1). */
  allowRemote?: boolean;
  /** Where hub models are cached (default: transformers.js's cache directory). */
  cacheDir?: string;
  /** Called with each file name as it downloads. */
  onDownload?: (file: string) => void;
}

function offlineHelp(spec: string): string {
  return `download the folder elsewhere (${REQUIRED_FILES.join(', ')}) and pass its path, ` + `e.g. --model ./models/${spec.split('/')[1]}`;
}

export async function resolveModelPath(spec: string, options: ResolveOptions = {}): Promise<string> {
  if (existsSync(spec)) return spec;
  // Only a hub id needs transformers.js's settings (cache folder, host); a local folder never loads it.
  const { env } = await import('@huggingface/transformers');
  if (!HUB_ID.test(spec)) {
    throw new ClipDecoderError('MODEL_NOT_FOUND', `${spec}: no such model folder`, spec);
  }
  const cacheDir = options.cacheDir ?? env.cacheDir ?? '.cache';
  const cached = join(cacheDir, spec);
  if (REQUIRED_FILES.every((f) => existsSync(join(cached, f)))) return cached;

  const allowRemote = options.allowRemote ?? (process.env.HF_HUB_OFFLINE !== '1' && env.allowRemoteModels !== false);
  if (!allowRemote) {
    throw new ClipDecoderError(
      'HUB_OFFLINE',
      `${spec}: not a local folder and not cached, and remote models are disabled: ${offlineHelp(spec)}`,
      spec,
    );
  }
  const base = `${env.remoteHost.replace(/\/$/, '')}/${spec}/resolve/main/`;
  for (const file of REQUIRED_FILES) {
    const target = join(cached, file);
    if (existsSync(target)) continue;
    options.onDownload?.(file);
    let res: Response;
    try {
      res = await fetch(base + file);
    } catch (e) {
      const reason = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
      throw new ClipDecoderError(
        'HUB_OFFLINE',
        `${spec}: not a local folder, not cached, and the hub is unreachable (${reason}): ${offlineHelp(spec)}`,
        spec,
        { cause: e },
      );
    }
    if (!res.ok) {
      throw new ClipDecoderError(
        'MODEL_NOT_FOUND',
        `${spec}: the hub answered ${res.status} for ${file}: is it a CLIP model in the transformers.js layout?`,
        spec,
      );
    }
    await mkdir(dirname(target), { recursive: true });
    const tmp = `${target}.${process.pid}.download`;
    try {
      await writeFile(tmp, new Uint8Array(await res.arrayBuffer()));
      await rename(tmp, target);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
  }
  return cached;
}
