import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN } from '../../src/config/config.js';
import { loadConfig, type ServeFlags } from '../../src/config/load.js';
import type { CrosscredError } from '../../src/core/errors.js';
import { type Chain, CLI_ARGS, CLI_EXEC, type DaemonProcess, roleArn, spawnDaemon, startChain, waitUntilReady } from '../support/chain.js';
import { crosscred } from '../support/run-cli.js';

/**
 * Least privilege by default (issue 6, item 6): credentials are served on loopback unless an
 * operator says otherwise in so many words, the container endpoint exists only with a secret,
 * and the admin listener has no path to credentials at all.
 */

const ARN = roleArn('app');
const TTL = 'x-aws-ec2-metadata-token-ttl-seconds';
const TOKEN = 'x-aws-ec2-metadata-token';
/** Nothing listens here: STS calls from processes that must never get that far fail at once, on loopback. */
const DEAD_STS = 'http://127.0.0.1:9';

let chain: Chain;

beforeAll(async () => {
  chain = await startChain();
});
afterAll(async () => {
  await chain?.close();
});

/** `crosscred serve` flags for the chain's role, without any listen address. */
function roleFlags(stsEndpoint = chain.sts.url): string[] {
  return ['--role-arn', ARN, '--token-file', chain.tokenFile, '--region', 'us-east-1', '--sts-endpoint', stsEndpoint];
}

function load(flags: ServeFlags, env: Record<string, string> = {}) {
  return loadConfig({
    flags: { 'role-arn': ARN, 'token-file': '/run/token', region: 'us-east-1', ...flags },
    env,
    readText: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  });
}

function configProblem(flags: ServeFlags): string {
  try {
    load(flags);
  } catch (err) {
    expect((err as CrosscredError).code).toBe('CROSSCRED_ERR_CONFIG_INVALID');
    return (err as Error).message;
  }
  throw new Error(`expected the configuration ${JSON.stringify(flags)} to be refused`);
}

describe('defaults', () => {
  it('puts the credential listener on 127.0.0.1:8170 and the admin listener on 127.0.0.1:8171 when nothing is said', () => {
    expect(DEFAULT_LISTEN).toEqual({ host: '127.0.0.1', port: 8170 });
    expect(DEFAULT_ADMIN_LISTEN).toEqual({ host: '127.0.0.1', port: 8171 });
    // The IRSA environment alone, as an unmodified pod has it: no flag, no file.
    const config = loadConfig({ flags: {}, env: { AWS_ROLE_ARN: ARN, AWS_WEB_IDENTITY_TOKEN_FILE: '/run/token', AWS_REGION: 'eu-west-1' } });
    expect(config.listeners).toEqual([{ host: '127.0.0.1', port: 8170, role: 'app' }]);
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 8171 });
    expect(config.authTokenFile).toBeUndefined();
    expect(config.allowImdsV1).toBe(false);
  });

  it('a real daemon started with no address binds exactly 127.0.0.1:8170 and 127.0.0.1:8171 (in a private network namespace)', async (ctx) => {
    // A private network namespace: the default ports are never taken from anyone on this host,
    // and what the process bound can be read from its own /proc/<pid>/net/tcp{,6}.
    const probe = await promisify(execFile)('unshare', ['-rn', 'true']).then(
      () => undefined,
      (err: Error) => `cannot make a private network namespace here (unshare -rn: ${err.message.split('\n')[0]})`,
    );
    if (probe) ctx.skip(probe);
    const child = spawn('unshare', ['-rn', CLI_EXEC, ...CLI_ARGS, 'serve', ...roleFlags(DEAD_STS)], {
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/root' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`daemon did not open its listeners:\n${output.join('')}`)), 15_000);
        const onData = (chunk: Buffer) => {
          output.push(chunk.toString('utf8'));
          if (output.join('').includes('"admin listener open')) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.once('exit', (code) => reject(new Error(`daemon exited with ${code}:\n${output.join('')}`)));
      });
      // unshare execs node in place: the child's pid is the daemon's.
      expect(await listeningSockets(child.pid!)).toEqual(['127.0.0.1:8170', '127.0.0.1:8171']);
      const opened = output
        .join('')
        .split('\n')
        .filter((l) => l.includes('listener open'))
        .map((l) => (JSON.parse(l) as { address: string }).address);
      expect(opened).toEqual(['127.0.0.1:8170', '127.0.0.1:8171']);
    } finally {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    }
  });
});

describe('binding anything other machines can reach is explicit', () => {
  const remote = ['0.0.0.0:8170', '[::]:8170', '192.0.2.10:8170'];

  it.each(remote)('the real CLI refuses --listen %s without --allow-remote: exit 78, the address and the flag named, nothing bound', async (address) => {
    const run = await crosscred(['serve', ...roleFlags(DEAD_STS), '--listen', address, '--admin-listen', '127.0.0.1:0'], {
      HOME: process.env['HOME'] ?? '/root',
    });
    expect(run.code).toBe(78);
    expect(run.stderr).toContain('CROSSCRED_ERR_CONFIG_INVALID');
    expect(run.stderr).toContain(`listen (--listen): ${address} can be reached from other machines`);
    expect(run.stderr).toContain('--allow-remote');
    expect(run.stdout).not.toContain('listener open');
  });

  it('refuses the same in a config file, naming the file', async () => {
    const file = join(chain.dir, 'remote.yaml');
    await writeFile(
      file,
      `roles:\n  - roleArn: ${ARN}\ntokenFile: ${chain.tokenFile}\nregion: us-east-1\nstsEndpoint: ${DEAD_STS}\nlisten: ["0.0.0.0:8170"]\nadminListen: 127.0.0.1:0\n`,
    );
    const run = await crosscred(['serve', '--config', file], { HOME: process.env['HOME'] ?? '/root' });
    expect(run.code).toBe(78);
    expect(run.stderr).toContain(`listen (config file ${file}): 0.0.0.0:8170 can be reached from other machines`);
    expect(run.stdout).not.toContain('listener open');
  });

  it('refuses every address that is neither loopback nor link-local, IPv6 and names included', () => {
    for (const address of [
      '10.1.2.3:8170',
      '[2001:db8::1]:8170',
      '[::ffff:10.0.0.1]:8170',
      '[fec0::1]:8170',
      '[fe8::1]:8170',
      '[fe0::1]:8170',
      'metadata.example.com:80',
      '127.0.0.1.nip.io:80',
    ]) {
      expect(configProblem({ listen: [address] }), address).toMatch(/can be reached from other machines.*--allow-remote/);
    }
  });

  it('accepts loopback and link-local addresses without it, and a remote address only with it', () => {
    for (const address of [
      '127.0.0.1:8170',
      '127.9.9.9:8170',
      '[::1]:8170',
      'localhost:8170',
      '169.254.169.254:80',
      '169.254.170.2:80',
      '[fe80::1]:80',
      '[febf::1]:80',
      '[fd00:ec2::254]:80',
      '[fd00:ec2::23]:80',
    ]) {
      expect(load({ listen: [address] }).listeners, address).toHaveLength(1);
    }
    expect(load({ listen: ['0.0.0.0:8170'], 'allow-remote': true }).listeners).toEqual([{ host: '0.0.0.0', port: 8170, role: 'app' }]);
  });
});

describe('the container endpoint needs a secret', () => {
  it('is off without --auth-token-file (or with an empty one): 404 CONTAINER_ENDPOINT_DISABLED whatever Authorization says, while IMDS still works', async () => {
    for (const extra of [[], ['--auth-token-file', '']]) {
      const d = await spawnDaemon([...roleFlags(), '--listen', '127.0.0.1:0', ...extra]);
      try {
        await waitUntilReady(d.admin);
        for (const path of ['/v1/credentials', '/v1/credentials/app']) {
          for (const authorization of [undefined, '', 'anything', 'x'.repeat(43)]) {
            const res = await request(`${d.listeners[0]}${path}`, { headers: authorization === undefined ? {} : { authorization } });
            const text = await res.body.text();
            expect(res.statusCode, `${path} ${authorization}`).toBe(404);
            expect(JSON.parse(text)).toMatchObject({ Code: 'CROSSCRED_ERR_CONTAINER_ENDPOINT_DISABLED' });
          }
        }
        expect(d.output.join('\n')).toMatch(/"containerEndpoint":false/);
        const token = await (await request(`${d.listeners[0]}/latest/api/token`, { method: 'PUT', headers: { [TTL]: '60' } })).body.text();
        expect((await request(`${d.listeners[0]}/latest/meta-data/iam/security-credentials/app`, { headers: { [TOKEN]: token } })).statusCode).toBe(200);
      } finally {
        await d.stop();
      }
    }
  });

  it('refuses to start with a secret file that is empty, blank, more than one line, guessably short, or open to group or others, and opens no listener', async () => {
    const cases: Array<[string, string, number, RegExp]> = [
      ['empty', '', 0o600, /is empty/],
      ['blank', '  \n\t\n', 0o600, /is empty/],
      ['two-lines', 'first-line-of-secret\nsecond-line\n', 0o600, /one line of printable ASCII/],
      ['one-character', 'x', 0o600, /use at least 16/],
      ['fifteen-characters', 'fifteen-chars-x', 0o600, /use at least 16/],
      ['group-writable', 'a-secret-others-could-have-planted', 0o620, /open to group or others/],
      ['world-writable', 'a-secret-others-could-have-planted', 0o602, /open to group or others/],
      ['group-readable', 'a-long-enough-secret-the-group-can-read', 0o640, /open to group or others/],
      ['world-readable', 'a-long-enough-secret-readable-by-everyone', 0o644, /open to group or others/],
    ];
    await Promise.all(
      cases.map(async ([name, content, mode, why]) => {
        const file = join(chain.dir, `secret-${name}`);
        await writeFile(file, content);
        await chmod(file, mode);
        const run = await crosscred(['serve', ...roleFlags(DEAD_STS), '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--auth-token-file', file], {
          HOME: process.env['HOME'] ?? '/root',
        });
        // 78, a configuration error: systemd's RestartPreventExitStatus=78 stops a restart loop.
        expect(run.code, name).toBe(78);
        expect(run.stderr, name).toContain('CROSSCRED_ERR_AUTH_TOKEN_FILE_INVALID');
        expect(run.stderr, name).toMatch(why);
        expect(run.stdout, name).not.toContain('listener open');
      }),
    );
  });
});

describe('the admin listener never serves credentials', () => {
  let d: DaemonProcess;
  let secret: string;
  let imdsToken: string;
  let served: { AccessKeyId: string; SecretAccessKey: string; Token: string };

  beforeAll(async () => {
    const authFile = join(chain.dir, 'admin-test-auth');
    d = await spawnDaemon([...roleFlags(), '--listen', '127.0.0.1:0', '--auth-token-file', authFile]);
    await waitUntilReady(d.admin);
    secret = await readFile(authFile, 'utf8');
    imdsToken = await (await request(`${d.listeners[0]}/latest/api/token`, { method: 'PUT', headers: { [TTL]: '21600' } })).body.text();
    served = (await (await request(`${d.listeners[0]}/v1/credentials`, { headers: { authorization: secret } })).body.json()) as typeof served;
  });
  afterAll(async () => {
    await d?.stop();
  });

  /** Every path that serves or leads to credentials on a credential listener, and spellings a router might fold onto one. */
  const CREDENTIAL_PATHS = [
    '/latest/api/token',
    '/latest/meta-data/iam/security-credentials',
    '/latest/meta-data/iam/security-credentials/',
    '/latest/meta-data/iam/security-credentials/app',
    '/latest/meta-data/iam/security-credentials-extended',
    '/latest/meta-data/iam/security-credentials-extended/',
    '/latest/meta-data/iam/security-credentials-extended/app',
    '/latest/meta-data/iam/info',
    '/latest/meta-data/placement/region',
    '/latest/dynamic/instance-identity/document',
    '/v1/credentials',
    '/v1/credentials/',
    '/v1/credentials/app',
    '//latest/meta-data/iam/security-credentials/app',
    '/latest/meta-data/iam/security-credentials/app/',
    '/LATEST/META-DATA/IAM/SECURITY-CREDENTIALS/APP',
    '/%6catest/meta-data/iam/security-credentials/app',
    '/v1/credentials?role=app',
    '/healthz/../v1/credentials',
    '/metrics/../latest/meta-data/iam/security-credentials/app',
    '/readyz/%2e%2e/v1/credentials',
    '/readyz?next=/v1/credentials',
  ];
  const ADMIN_OWN = /^\/(healthz|readyz|metrics)(\?.*)?$/;

  it('answers no credential path with credentials, for any method, with a valid session token and the right secret', async () => {
    const headers = { [TOKEN]: imdsToken, authorization: secret, [TTL]: '21600' };
    const secrets = [served.AccessKeyId, served.SecretAccessKey, served.Token, served.Token.slice(0, 40)];
    // The same requests on the credential listener do return credentials: the probe is a real one.
    expect(await rawRequest(d.listeners[0]!, 'GET', '/latest/meta-data/iam/security-credentials/app', headers)).toMatchObject({ status: 200 });
    expect((await rawRequest(d.listeners[0]!, 'GET', '/v1/credentials', headers)).body).toContain(served.SecretAccessKey);

    const answers: Array<{ method: string; path: string; status: number; body: string; headers: string }> = [];
    for (const path of CREDENTIAL_PATHS) {
      for (const method of ['GET', 'HEAD', 'PUT', 'POST'] as const) {
        answers.push({ method, path, ...(await rawRequest(d.admin, method, path, headers)) });
      }
    }
    for (const a of answers) {
      const where = `${a.method} ${a.path} → ${a.status}`;
      for (const s of secrets) {
        expect(a.body.includes(s), `${where}: credential bytes in the body`).toBe(false);
        expect(a.headers.includes(s), `${where}: credential bytes in a header`).toBe(false);
      }
      expect(a.body, `${where}: a session token in the body`).not.toMatch(/cc1[A-Za-z0-9_-]{40,}/);
      expect(a.headers, `${where}: an IMDS TTL header`).not.toContain(TTL);
      if (a.status === 200) expect(a.path, `${where}: 200 outside the admin's own pages`).toMatch(ADMIN_OWN);
    }
    // The canonical credential paths are unknown there (404), or refused by method; never served.
    for (const a of answers.filter((x) => !ADMIN_OWN.test(x.path) && !x.path.includes('..') && !x.path.includes('%2e'))) {
      expect([404, 405], `${a.method} ${a.path}`).toContain(a.status);
    }
  });

  it('keeps credential bytes out of its own pages, /healthz, /readyz and /metrics', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const { status, body } = await rawRequest(d.admin, 'GET', path, { authorization: secret, [TOKEN]: imdsToken });
      expect(status, path).toBe(200);
      for (const s of [served.AccessKeyId, served.SecretAccessKey, served.Token, secret, imdsToken]) expect(body.includes(s), path).toBe(false);
    }
  });
});

/** One request with the path sent exactly as written (no URL normalisation), answered in full. */
async function rawRequest(
  base: string,
  method: 'GET' | 'HEAD' | 'PUT' | 'POST',
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string; headers: string }> {
  const client = new Client(base);
  try {
    const res = await client.request({ method, path, headers });
    return { status: res.statusCode, body: await res.body.text(), headers: JSON.stringify(res.headers) };
  } finally {
    await client.close();
  }
}

/** Whether `crosscred serve` with these flags gets as far as opening its listeners. */
/** `host:port` of every TCP socket in LISTEN state in the network namespace of `pid`, sorted. */
async function listeningSockets(pid: number): Promise<string[]> {
  const out: string[] = [];
  for (const [file, v6] of [
    ['tcp', false],
    ['tcp6', true],
  ] as const) {
    const text = await readFile(`/proc/${pid}/net/${file}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4 || fields[3] !== '0A') continue;
      const [hexAddress, hexPort] = fields[1]!.split(':') as [string, string];
      out.push(`${v6 ? `[${ipv6FromProc(hexAddress)}]` : ipv4FromProc(hexAddress)}:${parseInt(hexPort, 16)}`);
    }
  }
  return out.sort();
}

/** /proc/net/tcp writes an IPv4 address as one host-order (little-endian) 32-bit word. */
function ipv4FromProc(hex: string): string {
  return [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.');
}

function ipv6FromProc(hex: string): string {
  const bytes: number[] = [];
  for (let word = 0; word < 4; word++) for (const i of [6, 4, 2, 0]) bytes.push(parseInt(hex.slice(word * 8 + i, word * 8 + i + 2), 16));
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}
