// What both cloud helpers share: started inside the VM's network namespace by
// test/e2e/vm-issuer-chain.test.ts, they print one JSON line {"event":"ready",...}, answer each
// stdin line "report" with one JSON line {"event":"report",...}, and close everything on SIGTERM
// or when stdin ends (the test went away), so nothing outlives the test.
import { readFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createServer as createTlsServer } from 'node:tls';
import { pathToFileURL } from 'node:url';

/** Bound on the report's own request to the issuer's admin listener (ms). */
const METRICS_TIMEOUT_MS = 3_000;

export async function readConfig() {
  const path = process.argv[2];
  if (!path) throw new Error('usage: node <helper>.mjs CONFIG.json');
  return JSON.parse(await readFile(path, 'utf8'));
}

export function importFrom(dir, name) {
  return import(pathToFileURL(join(dir, name)).href);
}

/** The STS emulator (dist/demo/sts-emulator.js) on 127.0.0.1, trusting the one rule given. */
export async function startEmulator(distDir, trust) {
  const { StsEmulator } = await importFrom(distDir, 'demo/sts-emulator.js');
  return StsEmulator.start({ trust: [trust] });
}

/**
 * A TCP forwarder from host:port to 127.0.0.1:targetPort: puts a fake that listens on 127.0.0.1
 * at the address a cloud's SDK has built in. With `tls` it terminates TLS first (a front that
 * answers as an official host name with a certificate from the test's CA).
 */
export async function forward({ host, port, targetPort, tls }) {
  const sockets = new Set();
  const onConnection = (socket) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [socket, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        socket.destroy();
        upstream.destroy();
      });
    }
    socket.pipe(upstream).pipe(socket);
  };
  const server = tls ? createTlsServer({ cert: await readFile(tls.certPath), key: await readFile(tls.keyPath) }, onConnection) : createServer(onConnection);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return {
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Header and claims of a JWT, without verifying it (the emulator did that): for the report only. */
export function decodeJwt(token) {
  const [header, payload] = token.split('.');
  const part = (text) => {
    try {
      return JSON.parse(Buffer.from(text ?? '', 'base64url').toString('utf8'));
    } catch {
      return null;
    }
  };
  return { header: part(header), claims: part(payload) };
}

/** What the emulator saw and issued: each token's header and claims (never the token itself) and each key. */
export function emulatorReport(emulator) {
  return {
    url: emulator.url,
    requests: emulator.requests.map((r) => ({ roleArn: r.roleArn, fault: r.fault, ...decodeJwt(r.token) })),
    issued: emulator.issued.map((i) => ({ accessKeyId: i.accessKeyId, roleArn: i.roleArn, subject: i.subject, sessionName: i.sessionName })),
  };
}

/** The issuer's `crosscred_issuer_http_requests_total` by route and status, from its admin listener. */
export async function issuerRequests(adminUrl) {
  const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(METRICS_TIMEOUT_MS) });
  const text = await res.text();
  const counts = [];
  for (const m of text.matchAll(/^crosscred_issuer_http_requests_total\{([^}]*)\} (\S+)$/gm)) {
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    counts.push({ route: labels.route, status: labels.status, count: Number(m[2]) });
  }
  return counts;
}

/** The ready line, then the report loop; `close` stops every server. */
export function serveControl({ ready, report, close, commands = {} }) {
  let closing;
  const shutdown = () => {
    closing ??= Promise.resolve()
      .then(close)
      .catch((err) => process.stderr.write(`close failed: ${err?.stack ?? err}\n`))
      .finally(() => process.exit(0));
    return closing;
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    // Other commands a peer offers (e.g. switching a fake's mode), each answered with {"event":<command>}.
    const command = commands[line.trim()];
    if (command) {
      command();
      process.stdout.write(`${JSON.stringify({ event: line.trim() })}\n`);
      return;
    }
    if (line.trim() !== 'report') return;
    report().then(
      (value) => process.stdout.write(`${JSON.stringify({ event: 'report', ...value })}\n`),
      (err) => process.stdout.write(`${JSON.stringify({ event: 'report', error: String(err?.stack ?? err) })}\n`),
    );
  });
  lines.on('close', shutdown);
  process.stdout.write(`${JSON.stringify({ event: 'ready', ...ready })}\n`);
}
