import { connect } from 'node:net';

/**
 * HTTP/1.x over a bare TCP socket, for requests no HTTP client will send: lower-case methods,
 * control bytes and raw UTF-8 in the request target, duplicated or malformed header lines,
 * bodies that smuggle a second request. The bytes go out exactly as given; the answers are parsed
 * just enough to know where each one ends.
 */

/** One answer read off the socket (interim 1xx answers are skipped and counted). */
export interface RawResponse {
  readonly status: number;
  /** Header lines in order, names lower-cased, values without surrounding whitespace. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The payload (a chunked one reassembled; empty for an answer to HEAD). */
  readonly body: Buffer;
  /** Every byte of this answer, status line included. */
  readonly raw: Buffer;
}

export interface RawExchange {
  /** Final answers, in order. Empty when the server closed without answering. */
  readonly responses: readonly RawResponse[];
  /** Number of interim (1xx) answers seen, e.g. `100 Continue`. */
  readonly interim: number;
  /** Every byte received on the connection. */
  readonly received: Buffer;
  /** True when the server ended the connection within the wait (after its answers). */
  readonly closedByServer: boolean;
  /** True when nothing complete arrived before the deadline (the daemon neither answered nor closed). */
  readonly timedOut: boolean;
  /** True when the connection was reset (a server closing with request bytes unread resets it). */
  readonly reset: boolean;
}

export interface RawOptions {
  /** The request used HEAD: its answer has headers only, whatever Content-Length says. */
  readonly head?: boolean;
  /** Read until this many final answers arrived (default 1), then stop (or wait for the close, see below). */
  readonly responses?: number;
  /** After the answers, wait this long for the server to close the connection (default 0: do not wait). */
  readonly waitForCloseMs?: number;
  /** Give up after this long without a complete answer (default 5 s; the daemon's own request timeout is 10 s). */
  readonly timeoutMs?: number;
}

/** The header lines of `raw` (which starts at a status line), or undefined while incomplete. */
function parseHead(buf: Buffer, from: number): { status: number; headers: Array<[string, string]>; bodyStart: number } | undefined {
  const end = buf.indexOf('\r\n\r\n', from, 'latin1');
  if (end < 0) return undefined;
  const lines = buf.toString('latin1', from, end).split('\r\n');
  const statusMatch = /^HTTP\/\d\.\d (\d{3})/.exec(lines[0] ?? '');
  if (!statusMatch) throw new Error(`not an HTTP status line: ${JSON.stringify(lines[0])}`);
  const headers = lines.slice(1).map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
  });
  return { status: Number(statusMatch[1]), headers, bodyStart: end + 4 };
}

/** Where a chunked body that starts at `from` ends (after its last CRLF), or undefined while incomplete. */
function chunkedEnd(buf: Buffer, from: number): number | undefined {
  let at = from;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at, 'latin1');
    if (lineEnd < 0) return undefined;
    const size = parseInt(buf.toString('latin1', at, lineEnd).split(';')[0]!, 16);
    if (size === 0) {
      // No trailers from a node:http server: the terminating CRLF follows at once.
      return buf.length >= lineEnd + 4 ? lineEnd + 4 : undefined;
    }
    at = lineEnd + 2 + size + 2;
    if (buf.length < at) return undefined;
  }
}

/** The payload of a complete chunked body. */
function dechunk(chunked: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = chunked.indexOf('\r\n', at, 'latin1');
    const size = parseInt(chunked.toString('latin1', at, lineEnd).split(';')[0]!, 16);
    if (!(size > 0)) return Buffer.concat(parts);
    parts.push(chunked.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

/**
 * Sends `bytes` on a new connection to 127.0.0.1:`port` and reads the answers. Never rejects:
 * a reset, a close without an answer or a timeout is reported in the result.
 */
export function sendRaw(port: number, bytes: Buffer | string, options: RawOptions = {}): Promise<RawExchange> {
  const wanted = options.responses ?? 1;
  const payload = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', noDelay: true });
    let received = Buffer.alloc(0);
    const responses: RawResponse[] = [];
    let interim = 0;
    let parsedUpTo = 0;
    let finished = false;
    let ended = false;
    let reset = false;
    let closeTimer: NodeJS.Timeout | undefined;

    const finish = (timedOut: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      clearTimeout(closeTimer);
      socket.destroy();
      resolve({ responses, interim, received, closedByServer: ended, timedOut, reset });
    };
    const deadline = setTimeout(() => finish(responses.length < wanted), options.timeoutMs ?? 5_000);

    /** Parses every complete answer in the buffer; `atEof` completes a close-delimited body. */
    const parse = (atEof: boolean) => {
      while (responses.length < wanted) {
        const head = parseHead(received, parsedUpTo);
        if (!head) return;
        const header = (name: string) => head.headers.find(([n]) => n === name)?.[1];
        let end: number | undefined;
        if (head.status < 200) {
          interim++;
          parsedUpTo = head.bodyStart;
          continue;
        }
        if (options.head || head.status === 204 || head.status === 304) end = head.bodyStart;
        else if (header('transfer-encoding')?.toLowerCase() === 'chunked') end = chunkedEnd(received, head.bodyStart);
        else if (header('content-length') !== undefined) {
          const length = Number(header('content-length'));
          end = received.length >= head.bodyStart + length ? head.bodyStart + length : undefined;
        } else if (atEof) end = received.length;
        if (end === undefined) return;
        const body = options.head
          ? Buffer.alloc(0)
          : header('transfer-encoding')?.toLowerCase() === 'chunked'
            ? dechunk(received.subarray(head.bodyStart, end))
            : received.subarray(head.bodyStart, end);
        responses.push({ status: head.status, headers: head.headers, body, raw: received.subarray(parsedUpTo, end) });
        parsedUpTo = end;
      }
    };
    const settle = () => {
      if (responses.length < wanted) return;
      const wait = options.waitForCloseMs ?? 0;
      if (ended || wait === 0) return finish(false);
      closeTimer ??= setTimeout(() => finish(false), wait);
    };

    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      try {
        parse(false);
      } catch {
        return finish(false);
      }
      settle();
    });
    /** The server closed (or reset) the connection: what arrived until then is all there is. */
    const closed = () => {
      if (finished) return;
      ended = true;
      try {
        parse(true);
      } catch {
        // Unparseable bytes before the close: reported through `received`.
      }
      finish(false);
    };
    socket.on('end', closed);
    // A reset, e.g. when the server closes while a large request is still being written (the
    // kernel resets a socket closed with unread data): its answer may have arrived before.
    socket.on('error', () => {
      reset = true;
      closed();
    });
    socket.on('close', closed);
    socket.write(payload);
  });
}

/** The value of header `name` in an answer (the first, when repeated). */
export function headerOf(response: RawResponse, name: string): string | undefined {
  return response.headers.find(([n]) => n === name)?.[1];
}
