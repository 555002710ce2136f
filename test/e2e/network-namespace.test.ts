import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIENCE, CLI_ARGS, CLI_EXEC, REPO_ROOT, roleArn, SUBJECT } from '../support/chain.js';
import { CLIENTS, clientAvailable, clientEnv, runClient } from '../support/clients.js';

/**
 * The VM experience, on a test host of our own: a network namespace where `crosscred net-setup`
 * puts 169.254.169.254 and 169.254.170.2 on a local link and crosscred (the demo chain: issuer,
 * STS emulator and daemon, all inside the namespace) listens on port 80 of both. Unmodified
 * clients run inside the namespace with NO endpoint variable and find the credentials where they
 * look by default. The namespace is deleted afterwards, also on failure.
 */
const run = promisify(execFile);
const NS = `crosscred-e2e-${process.pid}`;
const JS_CLIENT = join(REPO_ROOT, 'test/e2e/clients/js-sdk-credentials.mjs');
const BOTOCORE_CLIENT = join(REPO_ROOT, 'test/e2e/clients/botocore-credentials.py');

let unavailable: string | undefined;
let demo: ChildProcess | undefined;
let demoOutput = '';
let home: string;
let authTokenFile: string;

function inNs(command: string, args: string[]): [string, string[]] {
  return ['ip', ['netns', 'exec', NS, command, ...args]];
}

async function netSetup(action: 'up' | 'down'): Promise<string> {
  const [cmd, args] = inNs(CLI_EXEC, [...CLI_ARGS, 'net-setup', action, '--container-address']);
  return (await run(cmd, args)).stdout;
}

async function addressesOn(device: string): Promise<string[]> {
  const { stdout } = await run('ip', ['-n', NS, '-j', 'addr', 'show', 'dev', device]);
  return (JSON.parse(stdout) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>).flatMap((l) =>
    l.addr_info.map((a) => `${a.local}/${a.prefixlen}`),
  );
}

beforeAll(async () => {
  try {
    await run('ip', ['netns', 'add', NS]);
  } catch (err) {
    unavailable = `cannot create a network namespace here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`;
    if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(unavailable);
    return;
  }
  home = await mkdtemp(join(tmpdir(), 'crosscred-netns-'));
  await run('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
}, 30_000);

afterAll(async () => {
  demo?.kill('SIGTERM');
  if (!unavailable) {
    await netSetup('down').catch(() => undefined);
    await run('ip', ['netns', 'del', NS]).catch(() => undefined);
  }
  if (home) await rm(home, { recursive: true, force: true });
});

describe('crosscred net-setup', () => {
  it('puts the metadata addresses on a local link, idempotently, and takes them away again', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    await netSetup('up');
    const second = await netSetup('up');
    expect(second).toContain('169.254.169.254/32 is already on');
    // A dummy link where the kernel has them; otherwise (as on these build machines) the loopback.
    const device = await run('ip', ['-n', NS, 'link', 'show', 'dev', 'crosscred0']).then(
      () => 'crosscred0',
      () => 'lo',
    );
    expect(await addressesOn(device)).toEqual(expect.arrayContaining(['169.254.169.254/32', '169.254.170.2/32']));
    await netSetup('down');
    await netSetup('down');
    expect(await addressesOn('lo')).not.toContain('169.254.169.254/32');
    await expect(run('ip', ['-n', NS, 'link', 'show', 'dev', 'crosscred0'])).rejects.toBeTruthy();
    // Up again for the tests below.
    await netSetup('up');
  });
});

describe('unmodified clients find crosscred with no configuration', () => {
  beforeAll(async () => {
    if (unavailable) return;
    const [cmd, args] = inNs(CLI_EXEC, [
      ...CLI_ARGS,
      'demo',
      '--listen',
      '169.254.169.254:80',
      '--listen',
      '169.254.170.2:80',
      '--admin-listen',
      '127.0.0.1:8171',
      '--log-level',
      'warn',
    ]);
    demo = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' } });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo did not start:\n${demoOutput}`)), 20_000);
      const onData = (chunk: Buffer) => {
        demoOutput += chunk.toString('utf8');
        if (demoOutput.includes('Press Ctrl-C')) {
          clearTimeout(timer);
          resolve();
        }
      };
      demo!.stdout!.on('data', onData);
      demo!.stderr!.on('data', onData);
      demo!.once('exit', (code) => reject(new Error(`demo exited with ${code}:\n${demoOutput}`)));
    });
    // The demo prints the secret as the shell reads it from its file: AWS_CONTAINER_AUTHORIZATION_TOKEN="$(cat FILE)".
    authTokenFile = /AWS_CONTAINER_AUTHORIZATION_TOKEN="\$\(cat '?([^')]+)'?\)"/.exec(demoOutput)![1]!;
  }, 40_000);

  /** Runs a client inside the namespace with a clean environment: no AWS_* endpoint at all. */
  async function client(command: string, args: string[], extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const [cmd, nsArgs] = inNs(command, args);
    return JSON.parse(await runClient(cmd, nsArgs, clientEnv(home, extra))) as Record<string, string>;
  }

  it('the AWS CLI v2, botocore and the JS SDK default chain all get the same credentials from 169.254.169.254', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const keys = new Set<string>();
    const js = await client(process.execPath, [JS_CLIENT, 'node-provider-chain']);
    keys.add(js['accessKeyId']!);
    const boto = await client(CLIENTS.pyenvPython, [BOTOCORE_CLIENT]);
    expect(boto['method']).toBe('iam-role');
    keys.add(boto['accessKeyId']!);
    if (await clientAvailable(CLIENTS.awsCliV2)) {
      const cli = await client(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--format', 'process']);
      keys.add(cli['AccessKeyId']!);
    } else {
      ctx.annotate('AWS CLI v2 not installed: checked the JS SDK and botocore only');
    }
    expect(keys.size).toBe(1);
    expect([...keys][0]).toMatch(/^ASIA/);
  });

  it('the container endpoint answers at 169.254.170.2 with the token file', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const env = { AWS_CONTAINER_CREDENTIALS_FULL_URI: 'http://169.254.170.2/v1/credentials', AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: authTokenFile };
    const js = await client(process.execPath, [JS_CLIENT, 'http'], env);
    const boto = await client(CLIENTS.pyenvPython, [BOTOCORE_CLIENT], env);
    expect(boto['method']).toBe('container-role');
    expect(boto['accessKeyId']).toBe(js['accessKeyId']);
    expect(await readFile(authTokenFile, 'utf8')).not.toMatch(/\n$/);
  });

  it('nothing outside the namespace sees the address', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const { stdout } = await run('ip', ['-j', 'addr', 'show']);
    expect(stdout).not.toContain('169.254.169.254');
  });
});

// Last: taking the hop-limit rule down may also take the dummy link (where there is one) with it.
describe('crosscred net-setup --hop-limit', () => {
  it('with --hop-limit, installs and removes an nftables rule that sends replies with TTL 1', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    if (!(await clientAvailable('nft', ['--version']))) ctx.skip('nft is not installed (Debian package nftables)');
    const [cmd, args] = inNs(CLI_EXEC, [...CLI_ARGS, 'net-setup', 'up', '--hop-limit']);
    await run(cmd, args);
    await run(cmd, args);
    const [nft, nftArgs] = inNs('nft', ['list', 'table', 'inet', 'crosscred_metadata']);
    expect((await run(nft, nftArgs)).stdout).toMatch(/ip saddr 169\.254\.169\.254 ip ttl set 1/);
    const [downCmd, downArgs] = inNs(CLI_EXEC, [...CLI_ARGS, 'net-setup', 'down', '--hop-limit', '--address', '203.0.113.1/32']);
    await run(downCmd, downArgs);
    await expect(run(nft, nftArgs)).rejects.toBeTruthy();
  });
});

/**
 * What `--local-only` is for (a security review found `--hop-limit` does not do it): a "host"
 * namespace holds 169.254.169.254 and runs `crosscred serve` on port 80, with the OIDC issuer and
 * the STS emulator on its loopback; a "container" namespace is joined to it by a veth pair and
 * routes 169.254.169.254 via the host side, as a container on a Docker bridge does through its
 * default route. Run twice: with the address on lo, and on a link of its own (crosscred0: a dummy
 * link where the kernel has them, else a bridge standing in, since it is the same to the rule).
 */
const LOCAL_ONLY_TABLE = 'crosscred_local_only';
const HOP_LIMIT_TABLE = 'crosscred_metadata';
/** Time allowed to one probe (ms): a dropped SYN would use all of it. */
const PROBE_TIMEOUT_MS = 3_000;
/** "Fails fast" (ms): a refusal takes tens of ms here (more under load); a drop would take all of PROBE_TIMEOUT_MS. */
const REFUSED_WITHIN_MS = 1_000;
/** Bound on any one command of these tests, the SDK clients included (ms). */
const COMMAND_TIMEOUT_MS = 30_000;
/** Bound on the issuer and STS emulator starting, and on serve caching its first credentials (ms). */
const START_TIMEOUT_MS = 20_000;
const LOCAL_ONLY_ROLE = roleArn('app');

/**
 * An IMDSv2 client as an SDK does it (token PUT, role list, credentials) with one deadline; or,
 * with `udp` as its argument, a datagram to port 80 and the error that comes back. Prints JSON.
 */
const PROBE_SCRIPT = `
const t0 = performance.now();
const elapsed = () => Math.round(performance.now() - t0);
const out = (o) => process.stdout.write(JSON.stringify({ ...o, ms: elapsed() }));
if (process.argv[1] === 'udp') {
  const socket = (await import('node:dgram')).createSocket('udp4');
  const timer = setTimeout(() => { out({ error: 'none' }); process.exit(0); }, ${PROBE_TIMEOUT_MS});
  socket.on('error', (e) => { clearTimeout(timer); out({ error: e.code }); process.exit(0); });
  socket.connect(80, '169.254.169.254', () => { socket.send('x'); setTimeout(() => socket.send('x'), 100).unref(); });
} else {
  const base = 'http://169.254.169.254';
  const signal = AbortSignal.timeout(${PROBE_TIMEOUT_MS});
  try {
    const put = await fetch(base + '/latest/api/token', { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' }, signal });
    const headers = { 'x-aws-ec2-metadata-token': await put.text() };
    const list = await fetch(base + '/latest/meta-data/iam/security-credentials/', { headers, signal });
    const role = (await list.text()).trim();
    const creds = await fetch(base + '/latest/meta-data/iam/security-credentials/' + role, { headers, signal });
    const body = await creds.json();
    out({ statuses: [put.status, list.status, creds.status], accessKeyId: body.AccessKeyId });
  } catch (e) {
    out({ error: e.cause?.code ?? e.name });
  }
}
`;

/** Runs inside the host namespace: the issuer and STS emulator, a token for them; prints STS's URL. */
function chainScript(tokenFile: string): string {
  const module = (name: string) => JSON.stringify(pathToFileURL(join(REPO_ROOT, 'dist/demo', name)).href);
  return `
import { writeFile } from 'node:fs/promises';
const { DemoOidcIssuer } = await import(${module('oidc-issuer.js')});
const { StsEmulator } = await import(${module('sts-emulator.js')});
const issuer = await DemoOidcIssuer.start();
const sts = await StsEmulator.start({ trust: [{ roleArn: ${JSON.stringify(LOCAL_ONLY_ROLE)}, issuer: issuer.url, audience: ${JSON.stringify(AUDIENCE)}, subject: ${JSON.stringify(SUBJECT)} }] });
await writeFile(${JSON.stringify(tokenFile)}, await issuer.mint({ sub: ${JSON.stringify(SUBJECT)}, aud: ${JSON.stringify(AUDIENCE)}, ttlSeconds: 3600 }), { mode: 0o600 });
process.stdout.write(JSON.stringify({ sts: sts.url }) + '\\n');
process.once('SIGTERM', () => void Promise.all([sts.close(), issuer.close()]).then(() => process.exit(0)));
`;
}

interface Probe {
  readonly ms: number;
  readonly error?: string;
  readonly statuses?: number[];
  readonly accessKeyId?: string;
}

/** Where net-setup puts the address: lo, or a link named crosscred0 made before `up` (when it is not a dummy, `up` uses it and `down` leaves it). */
interface Holder {
  readonly title: string;
  readonly tag: string;
  readonly args: readonly string[];
  /** Makes the link if one is needed; returns the device the address should be on, and what it is. */
  prepare(ns: string): Promise<{ device: string; kind: string }>;
}

const HOLDERS: readonly Holder[] = [
  { title: 'address on lo', tag: 'lo', args: ['--interface', 'lo'], prepare: async () => ({ device: 'lo', kind: 'loopback' }) },
  {
    title: 'address on a link of its own',
    tag: 'link',
    args: ['--interface', 'crosscred0'],
    prepare: async (ns) => {
      try {
        await run('ip', ['-n', ns, 'link', 'add', 'crosscred0', 'type', 'dummy']);
        return { device: 'crosscred0', kind: 'dummy' };
      } catch {
        await run('ip', ['-n', ns, 'link', 'add', 'crosscred0', 'type', 'bridge']);
        return { device: 'crosscred0', kind: 'bridge (this kernel has no dummy links)' };
      }
    },
  },
];

for (const holder of HOLDERS) {
  describe(`crosscred net-setup --local-only (${holder.title}): a container one veth away`, () => {
    const hostNs = `crosscred-e2e-${process.pid}-${holder.tag}-host`;
    const containerNs = `crosscred-e2e-${process.pid}-${holder.tag}-ctr`;
    const made: string[] = [];
    const children: ChildProcess[] = [];
    let skip: string | undefined;
    let dir: string | undefined;
    let device = '';
    let kind = '';
    let serveOutput = '';

    function inside(ns: string, command: string, args: readonly string[], env?: Record<string, string>) {
      return run('ip', ['netns', 'exec', ns, command, ...args], { timeout: COMMAND_TIMEOUT_MS, ...(env ? { env } : {}) });
    }
    async function netSetupIn(...args: string[]): Promise<string> {
      return (await inside(hostNs, CLI_EXEC, [...CLI_ARGS, 'net-setup', ...args, ...holder.args])).stdout;
    }
    async function probe(ns: string, mode: 'imds' | 'udp' = 'imds'): Promise<Probe> {
      return JSON.parse((await inside(ns, process.execPath, ['--input-type=module', '-e', PROBE_SCRIPT, mode])).stdout) as Probe;
    }
    async function nftList(...args: string[]): Promise<string> {
      return (await inside(hostNs, 'nft', ['list', ...args])).stdout;
    }
    /** The unmodified JS SDK's default chain, with no endpoint variable: what an app would do. */
    async function jsSdk(ns: string): Promise<{ ok: boolean; output: string; ms: number }> {
      const started = performance.now();
      const result = await inside(ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], clientEnv(dir!, {})).then(
        (r) => ({ ok: true, output: r.stdout }),
        (e: { stdout?: string; stderr?: string; message: string }) => ({ ok: false, output: `${e.stdout ?? ''}${e.stderr ?? e.message}` }),
      );
      return { ...result, ms: Math.round(performance.now() - started) };
    }
    /** Spawns `command` in the host namespace and resolves with its output once `ready` matches it. */
    function startIn(command: string, args: string[], ready: RegExp, onOutput: (all: string) => void = () => undefined): Promise<string> {
      const child = spawn('ip', ['netns', 'exec', hostNs, command, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir! },
      });
      children.push(child);
      let output = '';
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${command} ${args[0]} did not start within ${START_TIMEOUT_MS} ms:\n${output}`)), START_TIMEOUT_MS);
        const onData = (chunk: Buffer) => {
          output += chunk.toString('utf8');
          onOutput(output);
          if (ready.test(output)) {
            clearTimeout(timer);
            resolve(output);
          }
        };
        child.stdout!.on('data', onData);
        child.stderr!.on('data', onData);
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`${command} ${args[0]} exited with ${code}:\n${output}`));
        });
      });
    }

    beforeAll(
      async () => {
        if (unavailable) return;
        if (!(await clientAvailable('nft', ['--version']))) {
          skip = 'nft is not installed (Debian package nftables)';
          return;
        }
        dir = await mkdtemp(join(tmpdir(), 'crosscred-local-only-'));
        for (const ns of [hostNs, containerNs]) {
          await run('ip', ['netns', 'add', ns]);
          made.push(ns);
          await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
        }
        ({ device, kind } = await holder.prepare(hostNs));
        // The container's side of a bridge: its own address, and the metadata address via the host.
        await run('ip', ['link', 'add', 'cc-host', 'netns', hostNs, 'type', 'veth', 'peer', 'name', 'cc-ctr', 'netns', containerNs]);
        await run('ip', ['-n', hostNs, 'addr', 'add', '10.254.0.1/30', 'dev', 'cc-host']);
        await run('ip', ['-n', containerNs, 'addr', 'add', '10.254.0.2/30', 'dev', 'cc-ctr']);
        await run('ip', ['-n', hostNs, 'link', 'set', 'cc-host', 'up']);
        await run('ip', ['-n', containerNs, 'link', 'set', 'cc-ctr', 'up']);
        await run('ip', ['-n', containerNs, 'route', 'add', '169.254.169.254/32', 'via', '10.254.0.1']);

        await netSetupIn('up');
        const tokenFile = join(dir, 'token');
        const stsLine = /\{"sts":"[^"]+"\}/;
        const chainOutput = await startIn(process.execPath, ['--input-type=module', '-e', chainScript(tokenFile)], stsLine);
        const stsUrl = (JSON.parse(stsLine.exec(chainOutput)![0]) as { sts: string }).sts;
        // Started once its credential listener is open; whether it has credentials, wait-ready asks
        // /readyz, as the unit's ExecStartPost does.
        await startIn(
          CLI_EXEC,
          [
            ...CLI_ARGS,
            'serve',
            '--role-arn',
            LOCAL_ONLY_ROLE,
            '--token-file',
            tokenFile,
            '--region',
            'us-east-1',
            '--sts-endpoint',
            stsUrl,
            '--listen',
            '169.254.169.254:80',
            '--admin-listen',
            '127.0.0.1:8171',
          ],
          /credential listener open/,
          (all) => (serveOutput = all),
        );
        await inside(hostNs, CLI_EXEC, [...CLI_ARGS, 'wait-ready', '--admin', 'http://127.0.0.1:8171', '--timeout-ms', String(START_TIMEOUT_MS)]).catch(
          (err: Error) => {
            throw new Error(`crosscred serve did not become ready: ${err.message}\n${serveOutput}`);
          },
        );
      },
      3 * START_TIMEOUT_MS + 10_000,
    );

    afterAll(async () => {
      await Promise.all(
        children.map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) return resolve();
              const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
              child.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
              child.kill('SIGTERM');
            }),
        ),
      );
      // Deleting a namespace takes its links, addresses and nftables tables with it.
      for (const ns of made) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      if (dir) await rm(dir, { recursive: true, force: true });
    }, 20_000);

    function skipIfNeeded(ctx: { skip: (note?: string) => void }): void {
      if (unavailable) ctx.skip(unavailable);
      if (skip) ctx.skip(skip);
    }

    it('without --local-only, the container gets credentials from 169.254.169.254 (the path works)', async (ctx) => {
      skipIfNeeded(ctx);
      ctx.annotate(`address on ${device}: ${kind}`);
      expect((await run('ip', ['-n', hostNs, '-j', 'addr', 'show', 'dev', device])).stdout).toContain('"169.254.169.254"');
      const fromContainer = await probe(containerNs);
      expect(fromContainer).toMatchObject({ statuses: [200, 200, 200], accessKeyId: expect.stringMatching(/^ASIA/) });
      // And an unmodified SDK there, with no configuration: what --local-only is to take away.
      const containerSdk = await jsSdk(containerNs);
      expect(containerSdk.ok, containerSdk.output).toBe(true);
    });

    it('--hop-limit alone does not stop it: the host sends the reply straight to the container', async (ctx) => {
      skipIfNeeded(ctx);
      await netSetupIn('up', '--hop-limit');
      expect(await nftList('table', 'inet', HOP_LIMIT_TABLE)).toMatch(/ip saddr 169\.254\.169\.254 ip ttl set 1/);
      expect(await probe(containerNs)).toMatchObject({ statuses: [200, 200, 200] });
      // Off again, so that what follows shows --local-only on its own.
      await inside(hostNs, 'nft', ['delete', 'table', 'inet', HOP_LIMIT_TABLE]);
    });

    it('with --local-only, the container is refused at once while the host still gets credentials', async (ctx) => {
      skipIfNeeded(ctx);
      await netSetupIn('up', '--local-only');
      await netSetupIn('up', '--local-only');
      const table = await nftList('table', 'inet', LOCAL_ONLY_TABLE);
      // Exactly one copy of each rule after two runs.
      expect(table.match(/ip daddr 169\.254\.169\.254 iifname != "lo" meta l4proto tcp reject with tcp reset/g)).toHaveLength(1);
      expect(table.match(/ip daddr 169\.254\.169\.254 iifname != "lo" reject with icmpx admin-prohibited/g)).toHaveLength(1);
      expect(table).toContain('type filter hook input priority filter; policy accept;');

      const refused = await probe(containerNs);
      expect(refused.error).toBe('ECONNREFUSED');
      expect(refused.ms).toBeLessThan(REFUSED_WITHIN_MS);
      // Not TCP: ICMP admin-prohibited, which the socket reports as EHOSTUNREACH (a closed port would be ECONNREFUSED).
      const udp = await probe(containerNs, 'udp');
      expect(udp.error).toBe('EHOSTUNREACH');
      // An app in the container: the SDK's chain ends at once with no credentials, rather than after timeouts.
      const containerSdk = await jsSdk(containerNs);
      expect(containerSdk.ok).toBe(false);
      expect(containerSdk.output).toMatch(/Could not load credentials from any providers/);
      expect(containerSdk.ms).toBeLessThan(COMMAND_TIMEOUT_MS);

      const fromHost = await probe(hostNs);
      expect(fromHost).toMatchObject({ statuses: [200, 200, 200], accessKeyId: expect.stringMatching(/^ASIA/) });
      const hostSdk = await jsSdk(hostNs);
      expect(hostSdk.ok, hostSdk.output).toBe(true);
      expect((JSON.parse(hostSdk.output) as { accessKeyId: string }).accessKeyId).toBe(fromHost.accessKeyId);
      ctx.annotate(
        `container refused in ${refused.ms} ms (raw IMDSv2), its JS SDK chain gave up in ${containerSdk.ms} ms; host JS SDK got credentials in ${hostSdk.ms} ms (process start included)`,
      );
    });

    it('down removes the rule (whatever the flags) and the address, and can run twice', async (ctx) => {
      skipIfNeeded(ctx);
      const output = await netSetupIn('down');
      await netSetupIn('down');
      expect(output).toContain(`deleted nftables table ${LOCAL_ONLY_TABLE}`);
      await expect(nftList('table', 'inet', LOCAL_ONLY_TABLE)).rejects.toBeTruthy();
      expect(await nftList('ruleset')).not.toMatch(/crosscred/);
      const linkLeft = await run('ip', ['-n', hostNs, '-j', 'addr', 'show', 'dev', device]).then(
        (r) => r.stdout,
        () => '',
      );
      expect(linkLeft).not.toContain('169.254.169.254');
      // A dummy link is net-setup's to delete; any other link named by --interface is left alone.
      if (device !== 'lo') expect(linkLeft !== '').toBe(kind !== 'dummy');
    });
  });
}

/**
 * `--tencent-metadata-only-for USER`: Tencent's metadata service has no token mode, so net-setup
 * can let only crosscred's user reach 169.254.0.23. A "metadata" namespace stands in for Tencent's
 * server (169.254.0.23 on its loopback, one veth away, as the real one is off the VM); the "host"
 * namespace routes to it and runs net-setup; a "container" namespace is forwarded through the host
 * as a container on a bridge is. `daemon` (uid 1) stands in for crosscred's user, and `nobody` and
 * root for every other process.
 */
const TENCENT_TABLE = 'crosscred_tencent_metadata';
const ALLOWED_USER = 'daemon';

/** One TCP connection to 169.254.0.23:80; prints what came back, or the error, bounded by PROBE_TIMEOUT_MS. */
const TENCENT_PROBE_SCRIPT = `
const socket = (await import('node:net')).connect(80, '169.254.0.23');
const out = (o) => { process.stdout.write(JSON.stringify(o)); process.exit(0); };
let data = '';
socket.setTimeout(${PROBE_TIMEOUT_MS}, () => out({ error: 'timeout' }));
socket.on('data', (chunk) => (data += chunk));
socket.on('end', () => out({ data }));
socket.on('error', (e) => out({ error: e.code }));
`;

describe('crosscred net-setup --tencent-metadata-only-for: only crosscred’s user reaches 169.254.0.23', () => {
  const hostNs = `crosscred-e2e-${process.pid}-tc-host`;
  const metadataNs = `crosscred-e2e-${process.pid}-tc-meta`;
  const containerNs = `crosscred-e2e-${process.pid}-tc-ctr`;
  const made: string[] = [];
  let server: ChildProcess | undefined;
  let skip: string | undefined;

  function inside(ns: string, command: string, args: readonly string[]) {
    return run('ip', ['netns', 'exec', ns, command, ...args], { timeout: COMMAND_TIMEOUT_MS });
  }
  /** The probe in `ns`, as `uid` (via setpriv) or as root. */
  async function reach(ns: string, uid?: number): Promise<{ data?: string; error?: string }> {
    const node = [process.execPath, '--input-type=module', '-e', TENCENT_PROBE_SCRIPT];
    const [command, ...args] = uid === undefined ? node : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', ...node];
    return JSON.parse((await inside(ns, command!, args)).stdout) as { data?: string; error?: string };
  }
  async function netSetupIn(...args: string[]): Promise<string> {
    return (await inside(hostNs, CLI_EXEC, [...CLI_ARGS, 'net-setup', ...args, '--interface', 'lo'])).stdout;
  }

  beforeAll(async () => {
    if (unavailable) return;
    if (!(await clientAvailable('nft', ['--version']))) {
      skip = 'nft is not installed (Debian package nftables)';
      return;
    }
    if (!(await clientAvailable('setpriv', ['--version']))) {
      skip = 'setpriv is not installed (Debian package util-linux)';
      return;
    }
    for (const ns of [hostNs, metadataNs, containerNs]) {
      await run('ip', ['netns', 'add', ns]);
      made.push(ns);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    const link = async (hostSide: string, other: string, otherNs: string, subnet: string) => {
      await run('ip', ['link', 'add', hostSide, 'netns', hostNs, 'type', 'veth', 'peer', 'name', other, 'netns', otherNs]);
      await run('ip', ['-n', hostNs, 'addr', 'add', `${subnet}.1/30`, 'dev', hostSide]);
      await run('ip', ['-n', otherNs, 'addr', 'add', `${subnet}.2/30`, 'dev', other]);
      await run('ip', ['-n', hostNs, 'link', 'set', hostSide, 'up']);
      await run('ip', ['-n', otherNs, 'link', 'set', other, 'up']);
      await run('ip', ['-n', otherNs, 'route', 'add', 'default', 'via', `${subnet}.1`]);
    };
    await link('tc-meta-h', 'tc-meta', metadataNs, '10.253.0');
    await link('tc-ctr-h', 'tc-ctr', containerNs, '10.252.0');
    await run('ip', ['-n', metadataNs, 'addr', 'add', '169.254.0.23/32', 'dev', 'lo']);
    await run('ip', ['-n', hostNs, 'route', 'add', '169.254.0.23/32', 'via', '10.253.0.2']);
    await inside(hostNs, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    server = spawn(
      'ip',
      [
        'netns',
        'exec',
        metadataNs,
        process.execPath,
        '-e',
        "require('node:net').createServer((s) => s.end('metadata')).listen(80, '169.254.0.23', () => console.log('listening'))",
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the stand-in metadata server did not start')), START_TIMEOUT_MS);
      server!.stdout!.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      server!.once('exit', (code) => reject(new Error(`the stand-in metadata server exited with ${code}`)));
    });
  }, 3 * START_TIMEOUT_MS);

  afterAll(async () => {
    server?.kill('SIGTERM');
    for (const ns of made) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }, 20_000);

  it('before: every uid on the host, and the container, reach the metadata service', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    if (skip) ctx.skip(skip);
    for (const uid of [1, 65534, undefined]) expect(await reach(hostNs, uid)).toEqual({ data: 'metadata' });
    expect(await reach(containerNs)).toEqual({ data: 'metadata' });
  });

  it(`up: only ${ALLOWED_USER} reaches it; nobody, root and the container are refused; down gives it back to all`, async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    if (skip) ctx.skip(skip);
    const output = await netSetupIn('up', '--tencent-metadata-only-for', ALLOWED_USER);
    await netSetupIn('up', '--tencent-metadata-only-for', ALLOWED_USER);
    expect(output).toContain(`only user ${ALLOWED_USER} reaches the Tencent metadata service at 169.254.0.23`);
    const table = (await inside(hostNs, 'nft', ['list', 'table', 'inet', TENCENT_TABLE])).stdout;
    // nft stored the uid it resolved the name to; one copy of each rule after two runs.
    expect(table.match(/ip daddr 169\.254\.0\.23 meta skuid != 1 meta l4proto tcp reject with tcp reset/g)).toHaveLength(1);
    expect(table.match(/chain forward/g)).toHaveLength(1);

    expect(await reach(hostNs, 1)).toEqual({ data: 'metadata' });
    expect(await reach(hostNs, 65534)).toEqual({ error: 'ECONNREFUSED' });
    expect(await reach(hostNs)).toEqual({ error: 'ECONNREFUSED' });
    expect(await reach(containerNs)).toEqual({ error: 'ECONNREFUSED' });

    const down = await netSetupIn('down');
    expect(down).toContain(`deleted nftables table ${TENCENT_TABLE}`);
    expect(await reach(hostNs, 65534)).toEqual({ data: 'metadata' });
    expect(await reach(containerNs)).toEqual({ data: 'metadata' });
  });

  it('refuses a user that is not a plain name or uid before it touches anything', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    if (skip) ctx.skip(skip);
    const refused = await inside(hostNs, CLI_EXEC, [...CLI_ARGS, 'net-setup', 'up', '--tencent-metadata-only-for', 'x; flush ruleset']).catch(
      (e: { code?: number; stderr?: string }) => e,
    );
    expect(refused).toMatchObject({ code: 2, stderr: expect.stringContaining('--tencent-metadata-only-for wants a user name or a numeric uid') });
    await expect(inside(hostNs, 'nft', ['list', 'table', 'inet', TENCENT_TABLE])).rejects.toBeTruthy();
  });
});
