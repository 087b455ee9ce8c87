// The HTTP service: POST /v1/tag (multipart `image` + `labels`, or raw image bytes with ?labels=), GET /healthz,
// and the web page at /. It calls the same Tagger as the CLI and holds no tagging logic of its own. It never
// fetches URLs; it bounds request size, label lists and concurrency (503 + Retry-After beyond the queue).
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { ClipDecoderError } from '../errors.ts';
import type { Tagger } from '../tagger/tagger.ts';
import { PAGE_HTML } from './page.ts';

export interface ServerOptions {
  /** Largest accepted request body / image in bytes (default 20 MB). */
  maxBodyBytes?: number;
  /** Most labels per request (default 1000). */
  maxLabels?: number;
  /** Longest label in characters (default 200). */
  maxLabelLength?: number;
  /** Requests tagged at once (default 2: one per core). */
  maxConcurrent?: number;
  /** Requests allowed to wait beyond those (default 32); more get 503. */
  maxQueue?: number;
  /** Fastify's logger (default off). */
  logger?: boolean;
}

interface TagQuery {
  labels?: string;
  top?: string;
  threshold?: string;
  attention?: string;
}

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** A counting semaphore with a bounded queue: past the bound, callers are refused rather than queued. */
class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number, private readonly queue: number) {}
  get load(): { active: number; waiting: number } {
    return { active: this.active, waiting: this.waiting.length };
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) {
      if (this.waiting.length >= this.queue) throw new HttpError(503, 'OVERLOADED', 'the server is busy; retry shortly');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

export function parseLabelList(raw: string | undefined, maxLabels: number, maxLength: number): string[] {
  if (raw === undefined || raw.trim() === '') throw new HttpError(400, 'NO_LABELS', 'no labels: send a comma-separated "labels" field');
  const labels = raw.split(',').map((l) => l.trim()).filter(Boolean);
  if (labels.length === 0) throw new HttpError(400, 'NO_LABELS', 'no labels: send a comma-separated "labels" field');
  if (labels.length > maxLabels) throw new HttpError(400, 'TOO_MANY_LABELS', `${labels.length} labels; at most ${maxLabels} per request`);
  const long = labels.find((l) => l.length > maxLength);
  if (long) throw new HttpError(400, 'LABEL_TOO_LONG', `label "${long.slice(0, 40)}…" is longer than ${maxLength} characters`);
  const seen = new Set<string>();
  for (const l of labels) {
    if (seen.has(l)) throw new HttpError(400, 'DUPLICATE_LABEL', `label "${l}" appears twice`);
    seen.add(l);
  }
  return labels;
}

function parseNumber(raw: string | undefined, name: string, check: (n: number) => boolean, want: string): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!check(n)) throw new HttpError(400, 'BAD_PARAMETER', `"${name}" must be ${want}, got "${raw}"`);
  return n;
}

export function buildServer(tagger: Tagger, options: ServerOptions = {}): FastifyInstance {
  const maxBody = options.maxBodyBytes ?? 20 * 1024 * 1024;
  const maxLabels = options.maxLabels ?? 1000;
  const maxLabelLength = options.maxLabelLength ?? 200;
  const gate = new Gate(options.maxConcurrent ?? 2, options.maxQueue ?? 32);
  const app = Fastify({ logger: options.logger ?? false, bodyLimit: maxBody });

  app.register(multipart, { limits: { fileSize: maxBody, files: 1, fields: 8, fieldSize: 256 * 1024, parts: 10 } });
  // Raw uploads: any image type, or octet-stream, read whole (bounded by bodyLimit).
  for (const type of ['application/octet-stream', /^image\/.*/] as const) {
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: maxBody }, (_req, body, done) => done(null, body));
  }

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err instanceof HttpError) {
      if (err.status === 503) reply.header('Retry-After', '1');
      return reply.status(err.status).send({ error: { code: err.code, message: err.message } });
    }
    if (err instanceof ClipDecoderError) {
      const status = err.code === 'IMAGE_TOO_LARGE' ? 413 : err.code === 'IMAGE_INVALID' || err.code === 'INPUT_INVALID' ? 400 : 500;
      return reply.status(status).send({ error: { code: err.code, message: err.message } });
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    const message = status === 413 ? `the request is larger than ${maxBody} bytes` : status === 500 ? 'internal error' : err.message;
    if (status === 500) app.log.error(err);
    return reply.status(status).send({ error: { code: err.code ?? (status === 413 ? 'TOO_LARGE' : 'BAD_REQUEST'), message } });
  });

  app.get('/healthz', async () => ({
    status: 'ok',
    model: tagger.model.id,
    head: tagger.meta.clipModel ? { trainedWith: tagger.meta.clipModel, labels: tagger.meta.labels.length } : undefined,
    load: gate.load,
  }));

  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE_HTML));

  app.post('/v1/tag', async (req: FastifyRequest<{ Querystring: TagQuery }>, reply: FastifyReply) => {
    const fields: TagQuery = { ...req.query };
    let image: Buffer | undefined;
    if (req.isMultipart()) {
      for await (const part of req.parts()) {
        if (part.type === 'file') {
          if (part.fieldname !== 'image') throw new HttpError(400, 'BAD_FIELD', `unexpected file field "${part.fieldname}"; send the image as "image"`);
          image = await part.toBuffer();
        } else if (['labels', 'top', 'threshold', 'attention'].includes(part.fieldname)) {
          fields[part.fieldname as keyof TagQuery] = String(part.value);
        }
      }
    } else if (Buffer.isBuffer(req.body)) {
      image = req.body;
    } else {
      throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send multipart/form-data with "image" and "labels", or raw image bytes with ?labels=a,b,c');
    }
    if (!image || image.byteLength === 0) throw new HttpError(400, 'NO_IMAGE', 'no image: send a multipart "image" file or raw image bytes');
    const labels = parseLabelList(fields.labels, maxLabels, maxLabelLength);
    const top = parseNumber(fields.top, 'top', (n) => Number.isInteger(n) && n > 0, 'a positive integer');
    const threshold = parseNumber(fields.threshold, 'threshold', (n) => n >= 0 && n <= 1, 'a probability in [0, 1]');
    const attention = fields.attention === '1' || fields.attention === 'true';
    const t0 = performance.now();
    const result = await gate.run(() => tagger.tag(image!, labels, { top, threshold, attention }));
    if (result.error) throw result.error;
    return reply.send({
      labels: result.labels.map((l) => ({
        label: l.label,
        probability: l.probability,
        ...(l.attention ? { attention: Array.from(l.attention, (x) => Number(x.toFixed(5))) } : {}),
      })),
      grid: tagger.grid,
      model: tagger.model.id,
      ms: Math.round(performance.now() - t0),
    });
  });
  return app;
}
