import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CONCURRENT_STS_REQUESTS, StsHttpHandler } from '../../src/platform/aws/sts-http-handler.js';
import { type Chain, type InProcessDaemon, roleArn, startChain, startInProcess } from '../support/chain.js';
import { selfSignedCert } from '../support/self-signed.js';

/**
 * The STS connection as it crosses clouds: HTTPS to an endpoint signed by a private CA
 * (--ca-bundle / AWS_CA_BUNDLE), through an egress proxy (HTTPS_PROXY, NO_PROXY). The emulator
 * serves TLS with a certificate made here by openssl; the proxy is a real CONNECT proxy on loopback.
 */

let certDir: string;
let caFile: string;
let chain: Chain;
let d: InProcessDaemon | undefined;

beforeAll(async () => {
  certDir = await mkdtemp(join(tmpdir(), 'crosscred-tls-'));
  caFile = join(certDir, 'sts.pem');
  const keyFile = join(certDir, 'sts.key');
  await selfSignedCert({ cn: 'private-sts', keyFile, certFile: caFile, ips: ['127.0.0.1'] });
  chain = await startChain({ tls: { key: await readFile(keyFile, 'utf8'), cert: await readFile(caFile, 'utf8') } });
});
afterEach(async () => {
  await d?.close();
  d = undefined;
});
afterAll(async () => {
  await chain?.close();
  await rm(certDir, { recursive: true, force: true });
});

describe('STS over HTTPS with a private CA', () => {
  it('refuses the endpoint without the CA bundle (retryable, nothing served)', async () => {
    d = await startInProcess(chain);
    await d.daemon.firstFetch;
    const status = d.daemon.roles.get('app')!.cache.status();
    expect(status.ready).toBe(false);
    expect(status.lastError?.kind).toBe('retryable');
  });

  it('trusts it with --ca-bundle', async () => {
    d = await startInProcess(chain, { 'ca-bundle': caFile });
    await d.daemon.firstFetch;
    expect(d.daemon.roles.get('app')!.cache.status().ready).toBe(true);
  });

  it('trusts it with AWS_CA_BUNDLE', async () => {
    d = await startInProcess(chain, {}, { AWS_CA_BUNDLE: caFile });
    await d.daemon.firstFetch;
    expect(d.daemon.roles.get('app')!.cache.status().ready).toBe(true);
  });
});

describe('egress proxy', () => {
  let proxy: Server;
  let proxyUrl: string;
  const tunnels: string[] = [];

  beforeAll(async () => {
    proxy = createServer((_req, res) => res.writeHead(405).end());
    proxy.on('connect', (req, clientSocket: Socket, head: Buffer) => {
      tunnels.push(req.url ?? '');
      const [host, port] = (req.url ?? '').split(':');
      const upstream = connect(Number(port), host!, () => {
        clientSocket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(clientSocket);
        clientSocket.pipe(upstream);
      });
      upstream.on('error', () => clientSocket.destroy());
      clientSocket.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => proxy.close(() => resolve())));

  it('tunnels the STS call through HTTPS_PROXY', async () => {
    tunnels.length = 0;
    d = await startInProcess(chain, { 'ca-bundle': caFile }, { HTTPS_PROXY: proxyUrl });
    await d.daemon.firstFetch;
    expect(d.daemon.roles.get('app')!.cache.status().ready).toBe(true);
    expect(tunnels).toEqual([new URL(chain.sts.url).host]);
  });

  it('goes direct for hosts in NO_PROXY', async () => {
    tunnels.length = 0;
    d = await startInProcess(chain, { 'ca-bundle': caFile }, { https_proxy: proxyUrl, NO_PROXY: '127.0.0.1' });
    await d.daemon.firstFetch;
    expect(d.daemon.roles.get('app')!.cache.status().ready).toBe(true);
    expect(tunnels).toEqual([]);
  });
});

describe('a proxy that accepts and never answers', () => {
  it("costs one bounded attempt, not undici's default 300 s, and frees the refresh slot", async () => {
    const sockets = new Set<Socket>();
    const silent = createServer();
    silent.on('connect', (_req, socket: Socket) => sockets.add(socket)); // never answers the CONNECT
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
      d = await startInProcess(chain, { 'ca-bundle': caFile, 'sts-connect-timeout-ms': '300', 'sts-timeout-ms': '500' }, { HTTPS_PROXY: url });
      // If the CONNECT waited for undici's default, this would outlast the test's 30 s limit.
      await d.daemon.firstFetch;
      expect(sockets.size).toBeGreaterThan(0);
      // The transport's own timeout ended it (not the cache's last-resort exchange deadline).
      expect(d.daemon.roles.get('app')!.cache.status()).toMatchObject({
        ready: false,
        refreshing: false,
        lastError: { kind: 'retryable', code: 'UND_ERR_HEADERS_TIMEOUT' },
      });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe('many roles at once through one STS client', () => {
  let plain: Chain;
  beforeAll(async () => {
    plain = await startChain({ roles: Array.from({ length: 120 }, (_, i) => `burst-${i}`) });
  });
  afterAll(async () => {
    await plain?.close();
  });

  it('queues requests beyond the concurrency limit without counting the wait against their timeouts: one STS call per role', async () => {
    // 120 roles, STS answering each call in 250 ms, at most MAX_CONCURRENT_STS_REQUESTS (8) in
    // flight: the last call waits about 3.75 s for its turn, three times its own 1.25 s deadline
    // (250 ms connect + 1 s response, room enough on a loaded machine). Counting the wait made the
    // tail time out and retry.
    plain.sts.failAlways({ kind: 'delay', ms: 250 });
    const configFile = join(plain.dir, 'burst.json');
    const names = Array.from({ length: 120 }, (_, i) => `burst-${i}`);
    await writeFile(configFile, JSON.stringify({ roles: names.map((name) => ({ name, roleArn: roleArn(name) })) }));
    d = await startInProcess(plain, {
      config: configFile,
      'role-arn': undefined,
      listen: [`127.0.0.1:0=${names[0]}`],
      'sts-connect-timeout-ms': '250',
      'sts-timeout-ms': '1000',
    });
    await d.daemon.firstFetch;
    const perRole = new Map<string, number>();
    for (const r of plain.sts.requests) perRole.set(r.roleArn, (perRole.get(r.roleArn) ?? 0) + 1);
    expect(perRole.size).toBe(120);
    expect([...perRole.values()].every((n) => n === 1)).toBe(true);
    expect([...d.daemon.roles.values()].every((r) => r.cache.status().ready)).toBe(true);
  });

  it('drops a request still waiting for its turn when the exchange is abandoned, without sending it', async () => {
    plain.sts.heal();
    plain.sts.failAlways({ kind: 'hang' });
    const handler = new StsHttpHandler({ connectTimeoutMs: 200, responseTimeoutMs: 800 });
    const { port } = new URL(plain.sts.url);
    const requestOf = () => ({
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: Number(port),
      method: 'POST',
      path: '/',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'Action=AssumeRoleWithWebIdentity',
    });
    // Only this test's own requests count (they name no role); a retry still in flight from the
    // test before must not.
    const ours = () => plain.sts.requests.filter((r) => r.roleArn === '').length;
    const before = ours();
    const abandon = new AbortController();
    const hanging = Array.from({ length: MAX_CONCURRENT_STS_REQUESTS }, () => handler.handle(requestOf()).catch((e: Error) => e));
    const queued = handler.handle(requestOf(), { abortSignal: abandon.signal }).catch((e: Error) => e);
    // Every turn is taken by a hanging call once STS has received all of them.
    for (let i = 0; i < 100 && ours() - before < MAX_CONCURRENT_STS_REQUESTS; i++) await new Promise((r) => setTimeout(r, 20));
    expect(ours() - before).toBe(MAX_CONCURRENT_STS_REQUESTS);
    abandon.abort();
    expect(((await queued) as Error).name).toBe('AbortError');
    handler.destroy();
    await Promise.all(hanging);
    // The abandoned request never reached STS.
    expect(ours() - before).toBe(MAX_CONCURRENT_STS_REQUESTS);
    plain.sts.heal();
  });
});
