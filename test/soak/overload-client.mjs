// The soak's overload phase (a child of test/soak/soak.mjs): holds more connections open on one
// credential listener than its cap (HTTP_LIMITS.maxConnections), makes sure the daemon has
// accepted them all (its sockets in /proc/net/tcp), then sends requests and records every answer.
//   node overload-client.mjs '{"host","port","cap","extra","rounds","secret"}'
// Prints one line: SOAKJSON {...}.
//
// docs/endpoints.md: more than `cap` open connections on one listener → 503 with `Retry-After: 1` and
// `Connection: close`. Each 503 closes its connection, so of `extra` requests sent at once with
// `cap + extra` connections open, every one still finds more than `cap` open: all must be 503.
import { connect } from 'node:net';
import { acceptedOn } from './proc.mjs';

const opts = JSON.parse(process.argv[2]);
const { host, port, cap, extra, rounds, secret } = opts;
/** Connections opened at once: under the listen backlog (Node's default 511), so none waits for a SYN retry. */
const CONNECT_BATCH = 256;
/** An answer slower than this is a timeout: an overloaded daemon must say so at once. */
const ANSWER_TIMEOUT_MS = 5_000;
/** How long the daemon may take to accept every connection of a round. */
const ACCEPT_WAIT_MS = 15_000;

const H = `Host: ${host}:${port}\r\n`;
const REQUESTS = [
  `PUT /latest/api/token HTTP/1.1\r\n${H}X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n`,
  `GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\n${H}X-aws-ec2-metadata-token: cc1-none\r\n\r\n`,
  `GET /v1/credentials HTTP/1.1\r\n${H}Authorization: ${secret}\r\n\r\n`,
];

const result = {
  cap,
  extra,
  rounds: [],
  // On connections opened beyond the cap: each must be 503 + Retry-After + Connection: close.
  answers: { total: 0, status503WithRetryAfter: 0, otherStatus: {}, missingRetryAfter: 0, notConnectionClose: 0, timeout: 0, reset: 0, closedWithoutAnswer: 0 },
  // On connections opened within the cap, asked at the same time: served as usual, never 503.
  withinCap: { total: 0, served: 0, refused503: 0, timeout: 0, reset: 0, closedWithoutAnswer: 0 },
  latencyMs: { p50: null, p99: null, max: null },
  connectErrors: 0,
  maxAcceptedSeen: 0,
  recovery: null,
  errors: [],
};
const latencies = [];
/** Open, idle connections (none has sent anything yet). */
let idle = [];

function openOne() {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.setNoDelay(true);
    s.once('connect', () => resolve(s));
    s.once('error', () => {
      result.connectErrors++;
      resolve(null);
    });
  });
}

async function openUpTo(total) {
  while (idle.length < total) {
    const n = Math.min(CONNECT_BATCH, total - idle.length);
    const opened = await Promise.all(Array.from({ length: n }, openOne));
    for (const s of opened) {
      if (!s) continue;
      // How many connections this client held when it opened this one: the daemon's count, give or
      // take the soak's own occasional checks (hence the margins in pick()).
      s.position = idle.length;
      // An idle connection the daemon closes (it should not, here) just leaves the pool.
      s.on('error', () => {});
      s.once('close', () => (idle = idle.filter((x) => x !== s)));
      idle.push(s);
    }
    if (opened.every((s) => s === null)) break;
  }
}

async function waitAccepted(n) {
  const t0 = performance.now();
  for (;;) {
    const seen = acceptedOn(port);
    result.maxAcceptedSeen = Math.max(result.maxAcceptedSeen, seen);
    if (seen >= n) return { accepted: seen, waitedMs: Math.round(performance.now() - t0) };
    if (performance.now() - t0 > ACCEPT_WAIT_MS) return { accepted: seen, waitedMs: Math.round(performance.now() - t0), short: true };
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Sends one request on `socket` and resolves with what came back. */
function ask(socket, bytes) {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    const t0 = performance.now();
    const finish = (outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...outcome, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), ANSWER_TIMEOUT_MS);
    socket.removeAllListeners('error');
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? -1);
      finish({ kind: 'answer', status, retryAfter: /\r\nretry-after: *([^\r]*)/i.exec(head)?.[1], connection: /\r\nconnection: *([^\r]*)/i.exec(head)?.[1] });
    });
    socket.on('error', (err) => finish({ kind: err.code === 'ECONNRESET' ? 'reset' : 'closed' }));
    socket.on('close', () => finish({ kind: 'closed' }));
    socket.write(bytes);
  });
}

/** Margins around the cap: connections this close to it may land on either side of it. */
const CAP_MARGIN = 64;

function pick(n) {
  // Half on the newest connections (opened over the cap), half on older ones opened within it.
  const over = idle.filter((s) => s.position >= cap + 8).slice(-Math.ceil(n / 2));
  const within = idle.filter((s) => s.position < cap - CAP_MARGIN);
  const chosenWithin = [];
  while (chosenWithin.length < n - over.length && within.length > 0) chosenWithin.push(within.splice(Math.floor(Math.random() * within.length), 1)[0]);
  return { over, within: chosenWithin };
}

try {
  for (let round = 0; round < rounds; round++) {
    const t0 = performance.now();
    await openUpTo(cap + extra);
    const openedMs = Math.round(performance.now() - t0);
    const accepted = await waitAccepted(cap + extra);
    const { over, within } = pick(extra);
    const targets = [...over, ...within];
    const [answers, withinAnswers] = await Promise.all([
      Promise.all(over.map((s, i) => ask(s, REQUESTS[i % REQUESTS.length]))),
      Promise.all(within.map((s, i) => ask(s, REQUESTS[i % REQUESTS.length]))),
    ]);
    const w = result.withinCap;
    for (const x of withinAnswers) {
      w.total++;
      if (x.kind === 'timeout') w.timeout++;
      else if (x.kind === 'reset') w.reset++;
      else if (x.kind === 'closed') w.closedWithoutAnswer++;
      else if (x.status === 503) w.refused503++;
      else w.served++;
    }
    const a = result.answers;
    for (const x of answers) {
      a.total++;
      if (x.kind === 'timeout') a.timeout++;
      else if (x.kind === 'reset') a.reset++;
      else if (x.kind === 'closed') a.closedWithoutAnswer++;
      else {
        latencies.push(x.ms);
        if (x.status !== 503) a.otherStatus[x.status] = (a.otherStatus[x.status] ?? 0) + 1;
        else if (x.retryAfter !== '1') a.missingRetryAfter++;
        else if (x.connection?.toLowerCase() !== 'close') a.notConnectionClose++;
        else a.status503WithRetryAfter++;
      }
    }
    result.rounds.push({
      openConnections: idle.length + targets.length,
      openedMs,
      acceptedByDaemon: accepted.accepted,
      acceptWaitMs: accepted.waitedMs,
      requests: targets.length,
    });
    idle = idle.filter((s) => !targets.includes(s));
    if (accepted.short) {
      result.errors.push(`round ${round}: the daemon accepted only ${accepted.accepted} of ${cap + extra} connections in ${ACCEPT_WAIT_MS} ms`);
      break;
    }
  }
  latencies.sort((x, y) => x - y);
  const q = (p) => (latencies.length ? +latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(1) : null);
  result.latencyMs = { p50: q(0.5), p99: q(0.99), max: latencies.length ? +latencies.at(-1).toFixed(1) : null };

  // Recovery: once the connections are gone, the same request on a fresh connection is served.
  for (const s of idle) s.destroy();
  idle = [];
  const t0 = performance.now();
  let drained = acceptedOn(port);
  while (drained > 0 && performance.now() - t0 < 10_000) {
    await new Promise((r) => setTimeout(r, 25));
    drained = acceptedOn(port);
  }
  const s = await openOne();
  const x = s ? await ask(s, REQUESTS[2]) : { kind: 'connect-error' };
  result.recovery = { drainedMs: Math.round(performance.now() - t0), leftOpen: drained, status: x.status ?? x.kind, ms: x.ms && +x.ms.toFixed(1) };
} catch (err) {
  result.errors.push(String(err?.stack ?? err));
}
process.stdout.write(`SOAKJSON ${JSON.stringify(result)}\n`);
process.exit(0);
