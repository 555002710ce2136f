import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Chain, type DaemonProcess, roleArn, spawnDaemon, startChain, waitUntilReady } from '../support/chain.js';

// The real `crosscred serve` process, stopped with SIGTERM and reloaded with SIGHUP.

let chain: Chain;
let daemon: DaemonProcess | undefined;
beforeEach(async () => {
  chain = await startChain({ roles: ['app', 'reports', 'extra'] });
});
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
  await chain.close();
});

const exitOf = (d: DaemonProcess) =>
  new Promise<number | null>((resolve) => (d.child.exitCode !== null ? resolve(d.child.exitCode) : d.child.once('exit', resolve)));

/** Resolves once a log line with this `msg` appears (bounded). */
async function logLine(d: DaemonProcess, msg: string, from = 0, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of d.output.slice(from)) {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (typeof entry['msg'] === 'string' && entry['msg'].startsWith(msg)) return entry;
      } catch {
        // not JSON
      }
    }
    if (Date.now() > deadline) throw new Error(`no "${msg}" log line within ${timeoutMs} ms:\n${d.output.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function refused(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(port), hostname);
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('SIGTERM', () => {
  it('answers every in-flight request, closes each keep-alive connection once its answer is sent, stops listening and exits 0', async () => {
    // STS answers in 1.5 s, so requests made at start-up are in flight (waiting for the first fetch) when SIGTERM arrives.
    chain.sts.failNext({ kind: 'delay', ms: 1500 });
    const authFile = join(chain.dir, 'auth');
    daemon = await spawnDaemon([
      '--token-file',
      chain.tokenFile,
      '--role-arn',
      roleArn('app'),
      '--sts-endpoint',
      chain.sts.url,
      '--region',
      'us-east-1',
      '--listen',
      '127.0.0.1:0',
      '--auth-token-file',
      authFile,
    ]);
    const d = daemon;
    const base = d.listeners[0]!;
    const secret = (await import('node:fs/promises')).readFile(authFile, 'utf8');
    // An idle keep-alive connection that must not hold the exit back for the keep-alive timeout.
    const keepAlive = new Agent({ keepAliveTimeout: 60_000 });
    const idle = await request(`${d.admin}/healthz`, { dispatcher: keepAlive });
    await idle.body.dump();

    const inFlight = Array.from({ length: 40 }, async () => {
      const res = await request(`${base}/v1/credentials`, { headers: { authorization: await secret } });
      return { status: res.statusCode, retryAfter: res.headers['retry-after'], body: await res.body.text() };
    });
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    d.child.kill('SIGTERM');
    const answers = await Promise.all(inFlight);
    const code = await exitOf(d);
    const tookMs = Date.now() - t0;

    // Every request got a real answer: 503 with Retry-After from the bounded cold wait (STS had not answered), never a reset.
    for (const a of answers) {
      expect(a.status).toBe(503);
      expect(a.retryAfter).toMatch(/^\d+$/);
      expect(a.body).not.toContain('SecretAccessKey');
    }
    expect(code).toBe(0);
    // Well inside the 5 s grace: no connection waited for its keep-alive timeout (the client gives up after 4 s).
    expect(tookMs).toBeLessThan(2_500);
    expect(await refused(base)).toBe(true);
    expect(await refused(d.admin)).toBe(true);
    await logLine(d, 'stopped');
    await keepAlive.close();
  });
});

describe('SIGHUP', () => {
  const config = (entries: { roles: Array<Record<string, unknown>>; logLevel?: string; listenPort?: number }) =>
    JSON.stringify({
      tokenFile: chain.tokenFile,
      region: 'us-east-1',
      stsEndpoint: chain.sts.url,
      authTokenFile: join(chain.dir, 'auth'),
      logLevel: entries.logLevel ?? 'info',
      listen: [`127.0.0.1:${entries.listenPort ?? 0}=app`],
      roles: entries.roles,
    });

  const credentialsOf = async (d: DaemonProcess, role: string) => {
    const secret = await (await import('node:fs/promises')).readFile(join(chain.dir, 'auth'), 'utf8');
    const res = await request(`${d.listeners[0]}/v1/credentials/${role}`, { headers: { authorization: secret } });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, string> };
  };

  it('applies a changed configuration without dropping the cached credentials of unchanged roles', async () => {
    const configFile = join(chain.dir, 'crosscred.json');
    await writeFile(
      configFile,
      config({
        roles: [
          { name: 'app', roleArn: roleArn('app') },
          { name: 'reports', roleArn: roleArn('reports') },
        ],
      }),
    );
    daemon = await spawnDaemon(['--config', configFile]);
    const d = daemon;
    await waitUntilReady(d.admin);
    const appBefore = await credentialsOf(d, 'app');
    const reportsBefore = await credentialsOf(d, 'reports');
    expect(appBefore.status).toBe(200);
    expect(reportsBefore.status).toBe(200);
    const callsBefore = chain.sts.issued.length;

    // reports gets a new duration, extra is added, the log level changes.
    await writeFile(
      configFile,
      config({
        logLevel: 'debug',
        roles: [
          { name: 'app', roleArn: roleArn('app') },
          { name: 'reports', roleArn: roleArn('reports'), durationSeconds: 900 },
          { name: 'extra', roleArn: roleArn('extra') },
        ],
      }),
    );
    const mark = d.output.length;
    d.child.kill('SIGHUP');
    const summary = await logLine(d, 'configuration reloaded', mark);
    expect(summary).toMatchObject({ unchanged: ['app'], replaced: ['reports'], added: ['extra'], removed: [], restartNeeded: [] });

    // app: the very same credentials, and no STS call was made for it.
    expect((await credentialsOf(d, 'app')).body['AccessKeyId']).toBe(appBefore.body['AccessKeyId']);
    const newCalls = chain.sts.issued.slice(callsBefore).map((c) => c.roleArn);
    expect(newCalls.sort()).toEqual([roleArn('extra'), roleArn('reports')]);
    // reports: fresh credentials with the new duration; extra: served.
    const reportsAfter = await credentialsOf(d, 'reports');
    expect(reportsAfter.body['AccessKeyId']).not.toBe(reportsBefore.body['AccessKeyId']);
    const lifetime = Date.parse(reportsAfter.body['Expiration']!) - Date.now();
    expect(lifetime).toBeLessThanOrEqual(900_000);
    expect((await credentialsOf(d, 'extra')).status).toBe(200);
    // The new log level is in effect: a debug line appears for a refused request.
    await (await request(`${d.listeners[0]}/v1/credentials`, { headers: { host: 'attacker.example' } })).body.dump();
    await logLine(d, 'refused a request for a foreign Host', mark);

    // Removing a role stops serving it.
    await writeFile(configFile, config({ roles: [{ name: 'app', roleArn: roleArn('app') }] }));
    const mark2 = d.output.length;
    d.child.kill('SIGHUP');
    expect(await logLine(d, 'configuration reloaded', mark2)).toMatchObject({ unchanged: ['app'], removed: ['reports', 'extra'] });
    expect((await credentialsOf(d, 'reports')).status).toBe(404);
    expect((await credentialsOf(d, 'app')).body['AccessKeyId']).toBe(appBefore.body['AccessKeyId']);
  });

  it('keeps running the previous configuration when the new one is invalid, and says which changes need a restart', async () => {
    const configFile = join(chain.dir, 'crosscred.json');
    await writeFile(configFile, config({ roles: [{ name: 'app', roleArn: roleArn('app') }] }));
    daemon = await spawnDaemon(['--config', configFile]);
    const d = daemon;
    await waitUntilReady(d.admin);
    const before = await credentialsOf(d, 'app');

    await writeFile(configFile, '{"roles": [{"roleArn": "not-an-arn"}], "bogus": 1}');
    let mark = d.output.length;
    d.child.kill('SIGHUP');
    const refusedLine = await logLine(d, 'configuration reload refused', mark);
    expect(refusedLine['level']).toBe('error');
    expect(String(refusedLine['msg'])).toContain('CROSSCRED_ERR_CONFIG_INVALID');
    expect((await credentialsOf(d, 'app')).body['AccessKeyId']).toBe(before.body['AccessKeyId']);

    // A new listen address cannot be applied to an open socket: reported, not applied.
    await writeFile(configFile, config({ roles: [{ name: 'app', roleArn: roleArn('app') }], listenPort: 1 }));
    mark = d.output.length;
    d.child.kill('SIGHUP');
    expect(await logLine(d, 'changed settings need a restart', mark)).toMatchObject({ settings: ['listen'] });
    expect(await logLine(d, 'configuration reloaded', mark)).toMatchObject({ unchanged: ['app'] });
    expect((await credentialsOf(d, 'app')).body['AccessKeyId']).toBe(before.body['AccessKeyId']);
  });
});
