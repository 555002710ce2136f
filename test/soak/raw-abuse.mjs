// The soak's hostile raw-socket client (a child of test/soak/soak.mjs): what wrk cannot send.
// Malformed HTTP, oversize headers and bodies, pipelining, connections abandoned or reset
// mid-request, and a standing pool of slow-loris connections trickling header bytes.
//   node raw-abuse.mjs '{"host","port","secret","durationMs","workers","pauseMs","slowLoris"}'
// Runs for durationMs (or until SIGTERM), then prints one line: SOAKJSON {...}.
import { connect } from 'node:net';

const opts = JSON.parse(process.argv[2]);
const { host, port, secret } = opts;
const H = `Host: ${host}:${port}\r\n`;
/** A refused request is answered at once; 5 s without an answer is a timeout (SDKs give IMDS 1 s). */
const ANSWER_TIMEOUT_MS = 5_000;
/** A slow-loris connection sends one header byte this often, in ms. */
const TRICKLE_MS = 1_000;

/**
 * Exchanges with a documented answer: raw bytes, the statuses expected in order (pipelining gives
 * two). docs/endpoints.md: malformed HTTP → 400, headers over 16 KiB → 431, a body over
 * 1 KiB → 413; HTTP/1.0 and a missing Host are accepted; X-Forwarded-For in any spelling → 403.
 */
const EXCHANGES = {
  'malformed-request-line': { bytes: 'BREW /pot HTCPCP/1.0\r\n\r\n', expect: [400] },
  'malformed-header-line': { bytes: `GET /latest/api/token HTTP/1.1\r\n${H}this line has no colon\r\n\r\n`, expect: [400] },
  'nul-in-header': { bytes: `GET /latest/meta-data/ HTTP/1.1\r\n${H}X-A: a\u0000b\r\n\r\n`, expect: [400] },
  'tls-client-hello': { bytes: Buffer.from(`16030100a5010000a10303${'00'.repeat(40)}`, 'hex'), expect: [400] },
  'bad-content-length': {
    bytes: `PUT /latest/api/token HTTP/1.1\r\n${H}X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: abc\r\n\r\n`,
    expect: [400],
  },
  'content-length-and-chunked': {
    bytes: `PUT /latest/api/token HTTP/1.1\r\n${H}X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    expect: [400],
  },
  'headers-over-16KiB': { bytes: `GET /latest/meta-data/ HTTP/1.1\r\n${H}X-Big: ${'x'.repeat(20 * 1024)}\r\n\r\n`, expect: [431] },
  'body-over-1KiB': {
    bytes: `PUT /latest/api/token HTTP/1.1\r\n${H}X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 4096\r\n\r\n${'b'.repeat(4096)}`,
    expect: [413],
  },
  'http10-without-host': { bytes: 'GET /latest/meta-data/iam/security-credentials/ HTTP/1.0\r\n\r\n', expect: [401] },
  'repeated-x-forwarded-for': {
    bytes: `PUT /latest/api/token HTTP/1.1\r\n${H}X-aws-ec2-metadata-token-ttl-seconds: 60\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2\r\nConnection: close\r\n\r\n`,
    expect: [403],
  },
  'pipelined-pair': {
    bytes: `PUT /latest/api/token HTTP/1.1\r\n${H}X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\nGET /v1/credentials HTTP/1.1\r\n${H}Authorization: ${secret}\r\nConnection: close\r\n\r\n`,
    expect: [200, 200],
  },
};

/**
 * Connections given up on: nothing is expected back; only a failure to connect counts against the
 * daemon. `mayBeAnswered`: the request's head is complete, so the daemon may read it and answer
 * (with that status) before it sees the connection gone, or may not; nobody can tell which, so the
 * soak's accounting of the daemon's answers allows each such abandon to have been answered or not.
 */
const ABANDONS = {
  'abandon-after-connect': { bytes: null, how: 'end' },
  'abandon-mid-request-line': { bytes: 'GET /latest/meta-da', how: 'destroy' },
  'abandon-mid-headers': { bytes: `GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\n${H}X-aws-ec2-metad`, how: 'destroy' },
  'abandon-before-reading-answer': {
    bytes: `PUT /latest/api/token HTTP/1.1\r\n${H}X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n`,
    how: 'destroy',
    mayBeAnswered: 200,
  },
  // The head is complete (a declared body of 512 bytes is within the 1 KiB limit): the daemon answers without reading the body, of which 100 bytes come.
  'abandon-mid-body': {
    bytes: `PUT /latest/api/token HTTP/1.1\r\n${H}X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 512\r\n\r\n${'b'.repeat(100)}`,
    how: 'destroy',
    mayBeAnswered: 200,
  },
  'reset-mid-headers': { bytes: `GET /v1/credentials HTTP/1.1\r\n${H}Authoriz`, how: 'reset' },
  'reset-before-reading-answer': { bytes: `GET /v1/credentials HTTP/1.1\r\n${H}Authorization: ${secret}\r\n\r\n`, how: 'reset', mayBeAnswered: 200 },
};

const result = {
  // name → { expected, ok, wrongStatus, timeout, reset, closedEarly, connectError, statuses, daemonStatuses }:
  // expected is the number of answers one exchange expects; daemonStatuses are the answers made by
  // the daemon's request handling (which its request counts include), told from those of Node's
  // HTTP parser (400, 431, 408: not counted) by their typed body.
  exchanges: {},
  abandons: {}, // name → { done, connectError, mayBeAnswered }
  slowLoris: { opened: 0, closedByServer: 0, answered408: 0, otherAnswers: {}, heldMsMax: 0, heldMs: [], openAtEnd: 0, ageAtEndMsMax: 0, connectError: 0 },
  errors: [],
};
for (const [n, x] of Object.entries(EXCHANGES))
  result.exchanges[n] = {
    expected: x.expect.length,
    ok: 0,
    wrongStatus: 0,
    timeout: 0,
    reset: 0,
    closedEarly: 0,
    connectError: 0,
    statuses: {},
    daemonStatuses: {},
  };
for (const [n, a] of Object.entries(ABANDONS)) result.abandons[n] = { done: 0, connectError: 0, mayBeAnswered: a.mayBeAnswered ?? null };

/**
 * Statuses of the complete responses at the start of `buf` (status line, headers, Content-Length
 * body). Those made by the daemon's request handling are also listed in `fromDaemon`: each of its
 * answers has a Content-Type (an error document, a token or a credential), none of Node's
 * parser-level refusals has. (Its answer to CONNECT is typed but not counted; nothing here sends one.)
 */
function parseResponses(buf) {
  const statuses = [];
  const fromDaemon = [];
  let at = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const head = buf.subarray(at, end).toString('latin1');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
    if (!m) {
      statuses.push(-1);
      break;
    }
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    if (buf.length < end + 4 + length) break;
    statuses.push(Number(m[1]));
    if (/\r\ncontent-type:/i.test(head)) fromDaemon.push(Number(m[1]));
    at = end + 4 + length;
  }
  statuses.fromDaemon = fromDaemon;
  return statuses;
}

function exchange(name) {
  const { bytes, expect } = EXCHANGES[name];
  const tally = result.exchanges[name];
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let connected = false;
    let settled = false;
    const socket = connect({ host, port });
    const finish = (outcome, statuses = []) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const s of statuses) tally.statuses[s] = (tally.statuses[s] ?? 0) + 1;
      for (const s of statuses.fromDaemon ?? []) tally.daemonStatuses[s] = (tally.daemonStatuses[s] ?? 0) + 1;
      tally[outcome]++;
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(() => finish('timeout', parseResponses(buf)), ANSWER_TIMEOUT_MS);
    socket.on('connect', () => {
      connected = true;
      socket.write(bytes);
    });
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const statuses = parseResponses(buf);
      if (statuses.length >= expect.length) finish(statuses.every((s, i) => s === expect[i]) ? 'ok' : 'wrongStatus', statuses);
    });
    socket.on('error', (err) => {
      if (!connected) return finish('connectError');
      const statuses = parseResponses(buf);
      // An answer read in full before the reset still counts as answered.
      if (statuses.length >= expect.length) finish(statuses.every((s, i) => s === expect[i]) ? 'ok' : 'wrongStatus', statuses);
      else finish(err.code === 'ECONNRESET' ? 'reset' : 'closedEarly', statuses);
    });
    socket.on('close', () => {
      const statuses = parseResponses(buf);
      if (statuses.length >= expect.length) finish(statuses.every((s, i) => s === expect[i]) ? 'ok' : 'wrongStatus', statuses);
      else finish('closedEarly', statuses);
    });
  });
}

function abandon(name) {
  const { bytes, how } = ABANDONS[name];
  const tally = result.abandons[name];
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let settled = false;
    const done = (key) => {
      if (settled) return;
      settled = true;
      tally[key]++;
      resolve();
    };
    socket.on('error', () => done('connectError'));
    socket.on('connect', () => {
      const after = () => {
        if (how === 'reset') socket.resetAndDestroy();
        else if (how === 'end') socket.end();
        else socket.destroy();
        done('done');
      };
      if (bytes === null) after();
      else socket.write(bytes, after);
    });
  });
}

const slowSockets = new Set();
let stopping = false;

function openSlowLoris() {
  const s = result.slowLoris;
  const socket = connect({ host, port });
  const openedAt = performance.now();
  let trickle;
  let buf = Buffer.alloc(0);
  socket.on('connect', () => {
    s.opened++;
    slowSockets.add(socket);
    socket.write(`GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\n${H}X-Slow: `);
    trickle = setInterval(() => socket.write('s'), TRICKLE_MS);
  });
  socket.on('data', (d) => (buf = Buffer.concat([buf, d])));
  socket.on('error', (err) => {
    if (!slowSockets.has(socket)) s.connectError++;
    void err;
  });
  socket.on('close', () => {
    clearInterval(trickle);
    if (!slowSockets.delete(socket) || stopping) return;
    // Closed by the daemon, with or without an answer.
    const held = Math.round(performance.now() - openedAt);
    s.closedByServer++;
    s.heldMs.push(held);
    s.heldMsMax = Math.max(s.heldMsMax, held);
    const status = parseResponses(buf)[0];
    if (status === 408) s.answered408++;
    else s.otherAnswers[status ?? 'none'] = (s.otherAnswers[status ?? 'none'] ?? 0) + 1;
    openSlowLoris(); // keep the pool full
  });
  socket.__openedAt = openedAt;
}

async function worker(index, until) {
  const names = [...Object.keys(EXCHANGES).map((n) => ['x', n]), ...Object.keys(ABANDONS).map((n) => ['a', n])];
  let i = index;
  while (!stopping && performance.now() < until) {
    const [kind, name] = names[i++ % names.length];
    try {
      await (kind === 'x' ? exchange(name) : abandon(name));
    } catch (err) {
      if (result.errors.length < 20) result.errors.push(String(err));
    }
    if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
  }
}

const until = performance.now() + opts.durationMs;
for (let i = 0; i < (opts.slowLoris ?? 0); i++) openSlowLoris();
process.on('SIGTERM', () => (stopping = true));
await Promise.all(Array.from({ length: opts.workers ?? 4 }, (_, i) => worker(i, until)));
stopping = true;
const now = performance.now();
result.slowLoris.openAtEnd = slowSockets.size;
for (const s of slowSockets) {
  result.slowLoris.ageAtEndMsMax = Math.max(result.slowLoris.ageAtEndMsMax, Math.round(now - s.__openedAt));
  s.destroy();
}
result.slowLoris.heldMs = result.slowLoris.heldMs.slice(0, 200);
process.stdout.write(`SOAKJSON ${JSON.stringify(result)}\n`);
process.exit(0);
