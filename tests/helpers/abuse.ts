// Hostile inputs for the server's limits, made on the fly (shared by tests/serve-limits.test.ts and
// bench/serve-abuse.ts): an SVG work bomb, a PNG decompression bomb, multipart bodies, a slow body.
import { connect, type Socket } from 'node:net';
import { crc32, deflateSync } from 'node:zlib';

/** `circles` blurred circles: a small file that librsvg takes ~12 ms per circle to render. */
export function svgWorkBomb(circles: number): Buffer {
  let s =
    '<svg xmlns="http://www.w3.org/2000/svg" width="224" height="224"><defs><filter id="b"><feGaussianBlur stdDeviation="20"/></filter></defs>';
  for (let i = 0; i < circles; i++) s += `<circle cx="${i % 224}" cy="${(i * 7) % 224}" r="90" filter="url(#b)"/>`;
  return Buffer.from(`${s}</svg>`);
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([len, body, crc]);
}

/** A valid greyscale PNG of width × height zero pixels: a few hundred KB that decode to width × height bytes. */
export function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8); // 8-bit greyscale, deflate, no filter, no interlace
  const rows = Buffer.alloc((width + 1) * height); // filter byte 0 + zero pixels, row after row
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export const BOUNDARY = '----clipdecoderabuse';

/** A multipart/form-data body from fields and files (in order). */
export function multipartBody(
  parts: ({ name: string; value: string } | { name: string; filename: string; data: Buffer; type?: string })[],
): { body: Buffer; contentType: string } {
  const out: Buffer[] = [];
  for (const p of parts) {
    if ('value' in p) out.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${p.name}"\r\n\r\n${p.value}\r\n`));
    else {
      out.push(
        Buffer.from(
          `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${p.name}"; filename="${p.filename}"\r\nContent-Type: ${p.type ?? 'image/png'}\r\n\r\n`,
        ),
      );
      out.push(p.data, Buffer.from('\r\n'));
    }
  }
  out.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return { body: Buffer.concat(out), contentType: `multipart/form-data; boundary=${BOUNDARY}` };
}

export interface RawResponse {
  status: number;
  headers: string;
  body: string;
  /** ms from the first byte sent to the socket closing (or the response ending). */
  ms: number;
  closed: boolean;
}

/**
 * Sends a request over a raw socket: the head at once, then the body `bytesPerTick` bytes every `tickMs` (the
 * whole body at once when 0). Resolves with the response (status 0 if none came) when the server closes the
 * connection or `giveUpMs` passes.
 */
export function rawRequest(
  url: string,
  head: string,
  body: Buffer,
  opts: { bytesPerTick?: number; tickMs?: number; giveUpMs?: number } = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const t0 = performance.now();
    const socket: Socket = connect(Number(port), hostname);
    let data = '';
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      clearInterval(timer);
      clearTimeout(giveUp);
      socket.destroy();
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
      const split = data.indexOf('\r\n\r\n');
      resolve({
        status,
        headers: split >= 0 ? data.slice(0, split) : data,
        body: split >= 0 ? data.slice(split + 4) : '',
        ms: performance.now() - t0,
        closed,
      });
    };
    const giveUp = setTimeout(() => finish(false), opts.giveUpMs ?? 10_000);
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (data += c));
    socket.on('error', () => {});
    socket.on('close', () => finish(true));
    socket.on('connect', () => {
      socket.write(head);
      if (!opts.bytesPerTick) return void socket.write(body);
      let sent = 0;
      timer = setInterval(() => {
        if (sent >= body.length || socket.destroyed) return clearInterval(timer);
        socket.write(body.subarray(sent, sent + opts.bytesPerTick!));
        sent += opts.bytesPerTick!;
      }, opts.tickMs ?? 1000);
    });
  });
}
