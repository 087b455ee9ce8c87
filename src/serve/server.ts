// The HTTP service: POST /v1/tag (multipart `image` + `labels`, or raw image bytes with ?labels=), GET /healthz,
// the web page at /, and at /web/ the static in-browser tagger (src/web/bundle.ts: the same files export-web
// writes, cross-origin isolated so that onnxruntime-web may use threads). It calls the same Tagger as the CLI and holds no tagging logic of its own. It never
// fetches URLs. Every limit is in limits.ts; every error is a ClipDecoderError answered with HTTP_STATUS.
//
// A request to /v1/tag goes: admitted (its declared body size reserved from the body budget before a byte is
// read; 503 at once past the queue) → body read (cut at --body-timeout) → a tagging slot → SVGs rendered in a
// killable child → tagged; answered 503 TIMEOUT if its --deadline passes first.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { readFile } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { ClipDecoderError, HTTP_STATUS } from '../errors.ts';
import type { Tagger } from '../tagger/tagger.ts';
import { Gate } from './gate.ts';
import { maxRequestBytes, multipartError, toClipDecoderError } from './http-errors.ts';
import { parseLabelList } from '../labels.ts';
import { parseDecimal, type NumberKind } from '../numbers.ts';
import { MAX_FIELDS, SMALL_FIELD_BYTES, labelsFieldBytes, resolveLimits, type ServeLimits } from './limits.ts';
import { PAGE_HTML } from './page.ts';
import { rasteriseSvg } from './svg.ts';
import { taggerWebScoring, webBundle, type WebFile } from '../web/bundle.ts';

export interface ServerOptions extends Partial<ServeLimits> {
  /** Fastify's logger (default off). */
  logger?: boolean;
  /** Where 5xx answers are reported with their cause (default: one block on stderr). */
  onServerError?: (line: string) => void;
}

const TAG_FIELDS = ['labels', 'top', 'threshold', 'attention'] as const;
type TagFields = Partial<Record<(typeof TAG_FIELDS)[number], string>>;

/** Per-request admission state, released when the response closes. */
interface Admission {
  deadline: number;
  releases: (() => void)[];
  /** Aborted when the response closes (answered, or the client left): waiters leave their queue. */
  closed: AbortController;
}

/** The request's labels, through the library's one label-list parser, within the server's limits. */
function requestLabels(raw: string | undefined, limits: ServeLimits): string[] {
  if (raw === undefined || raw.trim() === '')
    throw new ClipDecoderError('NO_LABELS', 'no labels: send a comma-separated "labels" field', 'labels');
  return parseLabelList(raw, { maxLabels: limits.maxLabels, maxLength: limits.maxLabelLength, source: '"labels"' });
}

/** An optional numeric field: absent or empty (an HTML form's blank input) is not given. */
function optionalNumber(raw: string | undefined, name: string, kind: NumberKind): number | undefined {
  return raw === undefined || raw === '' ? undefined : parseDecimal(raw, `"${name}"`, kind);
}

/** The query string's tag fields; a repeated one (?labels=a&labels=b) is an error, not an array. */
function queryFields(query: unknown): TagFields {
  const fields: TagFields = {};
  for (const name of TAG_FIELDS) {
    const v = (query as Record<string, unknown>)[name];
    if (Array.isArray(v))
      throw new ClipDecoderError(
        'BAD_REQUEST',
        `query parameter "${name}" is given ${v.length} times; give it once (labels comma-separated)`,
        name,
      );
    if (typeof v === 'string') fields[name] = v;
  }
  return fields;
}

/** Reads a multipart body: one `image` file and the tag fields, each within its byte limit. */
async function readMultipart(req: FastifyRequest, fields: TagFields, limits: ServeLimits): Promise<Buffer | undefined> {
  let image: Buffer | undefined;
  const seen = new Set<string>();
  try {
    for await (const part of req.parts()) {
      if (seen.has(part.fieldname))
        throw new ClipDecoderError('BAD_REQUEST', `field "${part.fieldname}" is given twice; give it once`, part.fieldname);
      seen.add(part.fieldname);
      if (part.type === 'file') {
        if (part.fieldname !== 'image')
          throw new ClipDecoderError('BAD_FIELD', `unexpected file field "${part.fieldname}"; send the image as "image"`, part.fieldname);
        image = await part.toBuffer();
        continue;
      }
      const name = part.fieldname as (typeof TAG_FIELDS)[number];
      if (!TAG_FIELDS.includes(name))
        throw new ClipDecoderError(
          'BAD_FIELD',
          `unexpected field "${part.fieldname}"; send image, labels, top, threshold, attention`,
          part.fieldname,
        );
      const value = String(part.value);
      const limit = name === 'labels' ? labelsFieldBytes(limits) : SMALL_FIELD_BYTES;
      if (part.valueTruncated || Buffer.byteLength(value) > limit) {
        const why = name === 'labels' ? ` (--max-labels ${limits.maxLabels} × --max-label-length ${limits.maxLabelLength})` : '';
        throw new ClipDecoderError('TOO_LARGE', `field "${name}" is larger than ${limit} bytes${why}`, name);
      }
      fields[name] = value;
    }
  } catch (e) {
    throw multipartError(e);
  }
  return image;
}

/**
 * Closes a connection whose request body is still arriving the way Apache and nginx do ("lingering close"):
 * send our FIN, then read and discard what the client still sends for up to 2 s before closing. Closing with
 * unread data makes the kernel send a reset, and a client still uploading would lose our 413/503.
 */
function lingerOnClose(socket: Socket | null): void {
  if (!socket) return;
  socket.destroySoon = function lingeringClose(this: Socket) {
    this.end();
    this.resume();
    const timer = setTimeout(() => this.destroy(), 2000);
    this.once('close', () => clearTimeout(timer));
    this.once('end', () => this.destroy());
  };
}

/** Rejects with `error` at `deadline` unless `work` settles first (the work itself runs on, bounded). */
function withDeadline<T>(work: Promise<T>, deadline: number, error: () => ClipDecoderError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), Math.max(0, deadline - performance.now()));
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

export function buildServer(tagger: Tagger, options: ServerOptions = {}): FastifyInstance {
  const limits = resolveLimits(options);
  const report = options.onServerError ?? ((line: string) => process.stderr.write(`${line}\n`));
  // Body bytes held at once (reserved before reading), and requests tagged at once.
  const bodies = new Gate(limits.maxBufferedBytes, limits.maxQueue, `body memory (--max-buffered ${limits.maxBufferedBytes})`);
  const slots = new Gate(limits.maxConcurrent, limits.maxQueue, `tagging slots (--concurrency ${limits.maxConcurrent})`);
  const admissions = new WeakMap<FastifyRequest, Admission>();
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.maxBodyBytes,
    // Headers must arrive within the body timeout; the whole request (queue wait included) within deadline +
    // body timeout as a backstop to our own per-request timers. Checked every second, not Node's 30 s.
    http: {
      headersTimeout: limits.bodyTimeoutMs,
      requestTimeout: limits.deadlineMs + limits.bodyTimeoutMs,
      connectionsCheckingInterval: 1000,
    },
    requestTimeout: limits.deadlineMs + limits.bodyTimeoutMs,
    connectionTimeout: limits.deadlineMs + limits.bodyTimeoutMs,
    keepAliveTimeout: 5000,
    // Node's own parse and timeout errors, in our JSON shape.
    clientErrorHandler: (err: Error & { code?: string }, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const e =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new ClipDecoderError(
              'BODY_TIMEOUT',
              `the request did not arrive within ${limits.bodyTimeoutMs} ms (--body-timeout)`,
              '--body-timeout',
            )
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? new ClipDecoderError(
                'HEADERS_TOO_LARGE',
                'the URL and headers are larger than 16 KB: send long label lists as a multipart "labels" field',
              )
            : new ClipDecoderError('BAD_REQUEST', `malformed HTTP request (${err.code ?? err.message})`);
      const status = HTTP_STATUS[e.code];
      const body = JSON.stringify({ error: { code: e.code, message: e.message } });
      const inFlight = (socket as unknown as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
      if (socket.writable && !inFlight?.headersSent) {
        socket.write(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy();
    },
  });
  app.server.maxConnections = limits.maxConnections;

  app.register(multipart, {
    limits: {
      fileSize: limits.maxBodyBytes,
      files: 1,
      fields: MAX_FIELDS,
      fieldSize: labelsFieldBytes(limits),
      parts: MAX_FIELDS + 1,
      headerPairs: 16,
    },
    throwFileSizeLimit: true,
  });
  // Raw uploads: any image type, or octet-stream, read whole (bounded by bodyLimit).
  for (const type of ['application/octet-stream', /^image\/.*/] as const) {
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: limits.maxBodyBytes }, (_req, body, done) => done(null, body));
  }

  app.setErrorHandler((err, req, reply) => {
    const e = toClipDecoderError(err, limits);
    const status = HTTP_STATUS[e.code];
    if (status >= 500 && e.code !== 'OVERLOADED' && e.code !== 'TIMEOUT') {
      const cause = e.cause instanceof Error ? (e.cause.stack ?? e.cause.message) : String(e.cause ?? e.stack);
      report(`clip-decoder: ${status} ${e.code} on ${req.method} ${req.url}: ${e.message}\n  cause: ${cause}`);
    }
    if (status === 503) reply.header('Retry-After', '1');
    // A body we did not read (or did not finish) is not parsed as the next request: close the connection.
    if (!req.raw.complete) {
      reply.header('Connection', 'close');
      lingerOnClose(req.raw.socket);
    }
    return reply.status(status).send({ error: { code: e.code, message: e.message } });
  });
  app.setNotFoundHandler((req) => {
    throw new ClipDecoderError(
      'NOT_FOUND',
      `no route ${req.method} ${req.url.split('?')[0]}: POST /v1/tag, GET /healthz, GET /, GET /web/`,
    );
  });

  // Admission runs before the body is read, so a refused request costs no memory.
  app.addHook('onRequest', async (req, reply) => {
    if (req.method !== 'POST' || req.routeOptions.url !== '/v1/tag') return;
    const admission: Admission = { deadline: performance.now() + limits.deadlineMs, releases: [], closed: new AbortController() };
    admissions.set(req, admission);
    const releaseAll = () => {
      admission.closed.abort();
      admission.releases.splice(0).forEach((r) => r());
    };
    reply.raw.once('close', releaseAll);
    reply.raw.once('finish', releaseAll);
    const declared = Number(req.headers['content-length'] ?? NaN);
    const isMultipart = /^multipart\//i.test(req.headers['content-type'] ?? '');
    const limit = isMultipart ? maxRequestBytes(limits) : limits.maxBodyBytes;
    if (declared > limit) {
      const flag = isMultipart ? `--max-body ${limits.maxBodyBytes} + the labels field` : '--max-body';
      throw new ClipDecoderError(
        'TOO_LARGE',
        `the request body is larger than ${limit} bytes (${flag}): it declares ${declared}`,
        '--max-body',
      );
    }
    // A chunked body (no length) reserves the most it may grow to.
    admission.releases.push(
      await bodies.acquire(Number.isFinite(declared) ? declared : limit, admission.deadline, admission.closed.signal),
    );
    if (admission.closed.signal.aborted) {
      releaseAll(); // granted just as its client left
      throw new ClipDecoderError('BAD_REQUEST', 'the client closed the connection');
    }
    // The body timeout starts once we begin reading; past it the client gets 408 and the connection closes.
    const timer = setTimeout(() => {
      if (req.raw.complete || reply.raw.headersSent) return;
      const body = JSON.stringify({
        error: { code: 'BODY_TIMEOUT', message: `the request body did not arrive within ${limits.bodyTimeoutMs} ms (--body-timeout)` },
      });
      reply.raw.writeHead(HTTP_STATUS.BODY_TIMEOUT, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        connection: 'close',
      });
      reply.raw.end(body, () => req.raw.socket?.destroy());
    }, limits.bodyTimeoutMs);
    admission.releases.push(() => clearTimeout(timer));
  });

  app.get('/healthz', async () => ({
    status: 'ok',
    model: tagger.model.id,
    head: tagger.meta.clipModel ? { trainedWith: tagger.meta.clipModel, labels: tagger.meta.labels.length } : undefined,
    mode: tagger.mode,
    threshold: tagger.threshold,
    load: { tagging: slots.load.used, waiting: slots.load.waiting + bodies.load.waiting, bufferedBytes: bodies.load.used },
  }));

  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE_HTML));

  // The in-browser page: its file list (the head's ONNX included) is built on the first request.
  let webFiles: Map<string, WebFile> | undefined;
  app.get('/web', async (_req, reply) => reply.redirect('/web/'));
  app.get('/web/*', async (req, reply) => {
    if (!tagger.head)
      throw new ClipDecoderError('NOT_FOUND', 'the in-browser page runs a head: this server was started with --head none', '--head');
    webFiles ??= new Map(
      webBundle({ folder: tagger.model.folder, head: tagger.head, meta: tagger.meta, scoring: taggerWebScoring(tagger) }).map((f) => [
        f.path,
        f,
      ]),
    );
    const path = (req.params as { '*': string })['*'] || 'index.html';
    const f = webFiles.get(path);
    if (!f) throw new ClipDecoderError('NOT_FOUND', `no file /web/${path} in the in-browser page`);
    // Cross-origin isolation gives the page SharedArrayBuffer, which onnxruntime-web's threads need.
    reply.header('Cross-Origin-Opener-Policy', 'same-origin').header('Cross-Origin-Embedder-Policy', 'require-corp');
    return reply.type(f.type).send(f.file ? await readFile(f.file) : f.data);
  });

  app.post('/v1/tag', async (req: FastifyRequest, reply: FastifyReply) => {
    const admission = admissions.get(req)!;
    const fields = queryFields(req.query);
    let image: Buffer | undefined;
    if (req.isMultipart()) image = await readMultipart(req, fields, limits);
    else if (Buffer.isBuffer(req.body)) image = req.body;
    else
      throw new ClipDecoderError(
        'UNSUPPORTED_MEDIA_TYPE',
        'send multipart/form-data with "image" and "labels", or raw image bytes with ?labels=a,b,c',
      );
    if (!image || image.byteLength === 0)
      throw new ClipDecoderError('NO_IMAGE', 'no image: send a multipart "image" file or raw image bytes');
    const labels = requestLabels(fields.labels, limits);
    const top = optionalNumber(fields.top, 'top', 'positive-integer');
    // "calibrated": the calibration's threshold (400 without a calibration)
    const threshold = tagger.resolveThreshold(
      fields.threshold === 'calibrated' ? 'calibrated' : optionalNumber(fields.threshold, 'threshold', 'probability'),
      '"threshold"',
    );
    const attention = fields.attention === '1' || fields.attention === 'true';

    const t0 = performance.now();
    const release = await slots.acquire(1, admission.deadline, admission.closed.signal);
    // The slot is held until the work ends, even past the deadline, so CPU stays bounded by --concurrency.
    const work = (async () => {
      try {
        if (req.raw.socket?.destroyed) return undefined; // the client left while waiting
        const input = await rasteriseSvg(image, tagger.model.folder.preprocess, limits.maxPixels, limits.maxRenderMs);
        return await tagger.tag(input, labels, { top, threshold, attention });
      } finally {
        release();
      }
    })();
    work.catch(() => {}); // answered by the race below, or nobody is waiting
    const result = await withDeadline(
      work,
      admission.deadline,
      () =>
        new ClipDecoderError(
          'TIMEOUT',
          `the request was not answered within ${limits.deadlineMs} ms (--deadline); retry shortly`,
          '--deadline',
        ),
    );
    if (!result) throw new ClipDecoderError('BAD_REQUEST', 'the client closed the connection');
    if (result.error) throw result.error;
    return reply.send({
      labels: result.labels.map((l) => ({
        label: l.label,
        probability: l.probability,
        ...(l.attention ? { attention: Array.from(l.attention, (x) => Number(x.toFixed(5))) } : {}),
      })),
      grid: tagger.grid,
      model: tagger.model.id,
      // how the probabilities were formed, and the calibration's decision threshold (null without one)
      mode: result.mode,
      threshold: tagger.threshold,
      ms: Math.round(performance.now() - t0),
    });
  });
  return app;
}
