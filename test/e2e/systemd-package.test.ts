import { type ChildProcess, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENTS, clientAvailable } from '../support/clients.js';
import { type CommandResult, nspawnUnavailable, SystemdContainer, until } from '../support/nspawn-systemd.js';
import { ensureRelease } from '../support/release-artifacts.js';

/**
 * The x86_64 .deb under a real systemd: a Debian bookworm root booted with systemd-nspawn
 * (test/support/nspawn-systemd.ts), the package installed with dpkg, configured the way an
 * operator would (one env file), started with `systemctl enable --now`, and the host's unmodified
 * AWS CLI v2, run in the container's network with no AWS_* variable and an empty HOME, finds the
 * credentials at 169.254.169.254. The STS is moto_server (an STS we did not write), started in the
 * container's network namespace, so the whole chain works offline inside the container.
 */
const run = promisify(execFile);
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const STS_PORT = 5000;
const STS_URL = `http://127.0.0.1:${STS_PORT}`;
const ROLE_ARN = 'arn:aws:iam::111122223333:role/vm-app';
const UNIT = 'crosscred.service';
/** dpkg, systemctl start (waits for ExecStartPost's wait-ready) and the AWS CLI on a busy 2-core machine. */
const STEP_TIMEOUT_MS = 2 * MINUTE;

/** What the operator writes: the role, the token file, the STS endpoint; the metadata address local-only as shipped. */
const ENV_FILE = `# edited by the systemd-package test
AWS_ROLE_ARN=${ROLE_ARN}
AWS_WEB_IDENTITY_TOKEN_FILE=/etc/crosscred/token
AWS_REGION=us-east-1
AWS_ENDPOINT_URL_STS=${STS_URL}
CROSSCRED_SERVE_ARGS=
CROSSCRED_NET_SETUP_ARGS=--local-only
`;

let unavailable: string | undefined;
let box: Awaited<ReturnType<typeof SystemdContainer.boot>> | undefined;
let moto: ChildProcess | undefined;
let motoOutput = '';
let deb: string;
let emptyHome: string;
let scratch: string;
const timings: Record<string, number> = {};

/** The x86_64 .deb as `npm run package` builds it (cached per content of the sources by release-artifacts). */
async function buildDeb(): Promise<string> {
  const release = await ensureRelease({ arch: ['x64'], kinds: ['deb'] });
  return release.files.x64!.deb!;
}

beforeAll(async () => {
  unavailable = await nspawnUnavailable();
  if (unavailable) return;
  // Both throw under CROSSCRED_E2E_STRICT=1 when missing.
  if (!(await clientAvailable(CLIENTS.awsCliV2))) {
    unavailable = `the AWS CLI v2 (${CLIENTS.awsCliV2}) is not installed: apt-get install awscli`;
    return;
  }
  if (!(await clientAvailable(CLIENTS.motoServer, ['--help']))) {
    unavailable = 'moto_server is not installed';
    return;
  }
  scratch = await mkdtemp(join(tmpdir(), 'crosscred-systemd-pkg-'));
  emptyHome = join(scratch, 'home');
  await run('mkdir', ['-m', '0700', emptyHome]);

  // The package build and the boot (debootstrap the first time) side by side.
  const started = Date.now();
  const [built, booted] = await Promise.allSettled([
    buildDeb().then((file) => {
      timings['deb'] = Date.now() - started;
      return file;
    }),
    SystemdContainer.boot(),
  ]);
  if (booted.status === 'fulfilled') box = booted.value;
  if (built.status === 'rejected') throw built.reason;
  if (booted.status === 'rejected') throw booted.reason;
  deb = built.value;
  Object.assign(timings, { debianRoot: box!.timings.rootMs, scratchRoot: box!.timings.scratchMs, boot: box!.timings.bootMs });

  // The fake STS, in the container's network only: the daemon inside reaches it on its loopback.
  moto = box!.spawnInNetwork([CLIENTS.motoServer, '-H', '127.0.0.1', '-p', String(STS_PORT)], { ...(process.env as Record<string, string>) });
  moto.stdout!.on('data', (d: Buffer) => {
    motoOutput = (motoOutput + d.toString()).slice(-8192);
  });
  moto.stderr!.on('data', (d: Buffer) => {
    motoOutput = (motoOutput + d.toString()).slice(-8192);
  });
  await until(
    'moto_server answering in the container network',
    async () => {
      const r = await box!.execInNetwork([process.execPath, '-e', `fetch(${JSON.stringify(STS_URL)}).then(() => process.exit(0), () => process.exit(1))`]);
      return r.code === 0 ? true : undefined;
    },
    2 * MINUTE,
    async () => motoOutput,
  );
  console.log(`systemd-package: ${JSON.stringify(timings)} (ms; root ${box!.rootKind}, system ${box!.state})`);
}, 20 * MINUTE);

afterAll(async () => {
  await box?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
}, 2 * MINUTE);

/** Runs a command in the container and insists on exit 0. */
async function must(argv: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await box!.exec(argv, { timeoutMs: STEP_TIMEOUT_MS, ...options });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\n${await unitStatus()}`);
  return r.stdout;
}

async function unitStatus(): Promise<string> {
  if (!box) return '';
  const status = await box.exec(['systemctl', 'status', '--no-pager', '--lines=0', UNIT]);
  const journal = await box.exec(['journalctl', '--no-pager', '-n', '40', '-u', UNIT]);
  return `systemctl status:\n${status.stdout}${status.stderr}\njournal:\n${journal.stdout}`;
}

async function show(property: string, unit = UNIT): Promise<string> {
  return (await box!.exec(['systemctl', 'show', '--value', '-p', property, unit])).stdout.trim();
}

/** The host's AWS CLI v2 in the container's network: no AWS_* variable, an empty HOME. */
function awsCli(args: string[]): Promise<CommandResult> {
  return box!.execInNetwork([CLIENTS.awsCliV2, ...args], { env: { PATH: '/usr/bin:/bin', HOME: emptyHome }, timeoutMs: STEP_TIMEOUT_MS });
}

/**
 * The credentials the AWS CLI finds with no configuration. The CLI gives IMDS 1 s per request and
 * does not retry: on a loaded 2-core machine one slow answer is not what these tests are about, so
 * up to three attempts (each retry is logged).
 */
async function awsCliRetried(args: string[]): Promise<string> {
  let r: CommandResult | undefined;
  for (let attempt = 1; attempt <= 3; attempt++) {
    r = await awsCli(args);
    if (r.code === 0) return r.stdout;
    console.log(`systemd-package: aws ${args[0]} ${args[1]} attempt ${attempt} exited ${r.code}: ${r.stderr.trim()}`);
  }
  throw new Error(`aws ${args.join(' ')} exited ${r!.code}\n${r!.stderr}\n${await unitStatus()}`);
}

async function credentialsFromImds(): Promise<{ AccessKeyId: string; SecretAccessKey: string; SessionToken: string; Expiration: string }> {
  return JSON.parse(await awsCliRetried(['configure', 'export-credentials', '--format', 'process'])) as {
    AccessKeyId: string;
    SecretAccessKey: string;
    SessionToken: string;
    Expiration: string;
  };
}

async function metadataAddresses(): Promise<string[]> {
  const { stdout } = await box!.execInNetwork(['ip', '-j', 'addr', 'show']);
  return (JSON.parse(stdout) as Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>).flatMap((l) =>
    l.addr_info.map((a) => `${a.local}/${a.prefixlen}`).filter((a) => a.startsWith('169.254.')),
  );
}

async function nftTables(): Promise<string[]> {
  const out = await must(['nft', 'list', 'tables']);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** Active, with a main process, and that process is not `previous`. */
async function activeWithNewMainPid(previous: string, timeoutMs: number): Promise<string> {
  return until(
    `${UNIT} active again with a main PID other than ${previous}`,
    async () => {
      const [state, pid] = [await show('ActiveState'), await show('MainPID')];
      return state === 'active' && pid !== '0' && pid !== previous ? pid : undefined;
    },
    timeoutMs,
    unitStatus,
  );
}

describe('the harness: systemd in nspawn', { timeout: STEP_TIMEOUT_MS }, () => {
  it('boots systemd as PID 1 with its own network only, and runs a unit', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const failed = box!.state === 'running' ? '' : (await box!.exec(['systemctl', '--failed', '--no-legend'])).stdout;
    expect(box!.state, `failed units:\n${failed}`).toBe('running');
    expect((await must(['cat', '/proc/1/comm'])).trim()).toBe('systemd');
    // --private-network: the loopback and nothing else.
    const links = JSON.parse((await box!.execInNetwork(['ip', '-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>;
    expect(links.map((l) => l.ifname)).toEqual(['lo']);
    await box!.writeFile(
      '/etc/systemd/system/harness-probe.service',
      '[Service]\nType=oneshot\nRemainAfterExit=yes\nDynamicUser=yes\nExecStart=/bin/sh -c "echo probe ran as $(id -u)"\n',
    );
    await must(['systemctl', 'daemon-reload']);
    await must(['systemctl', 'start', 'harness-probe.service']);
    expect(await show('ActiveState', 'harness-probe.service')).toBe('active');
    const journal = await must(['journalctl', '--no-pager', '-o', 'cat', '-u', 'harness-probe.service']);
    expect(journal).toMatch(/probe ran as [1-9]\d+/);

    // An absolute symbolic link in the container names a HOST path when the host follows it: refused.
    const outside = join(scratch, 'outside');
    await must(['ln', '-s', outside, '/etc/harness-link']);
    await expect(box!.writeFile('/etc/harness-link', 'escaped')).rejects.toThrow(/symbolic link/);
    expect(existsSync(outside)).toBe(false);
  });
});

describe('the .deb under a real systemd', { timeout: 3 * STEP_TIMEOUT_MS }, () => {
  it('installs, and with the shipped placeholder settings no scriptlet starts the service', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    await box!.copyIn(deb, `/var/tmp/${basename(deb)}`);
    await must(['dpkg', '-i', `/var/tmp/${basename(deb)}`]);
    expect((await must(['stat', '-c', '%a %U', '/etc/crosscred/crosscred.env'])).trim()).toBe('600 root');
    expect((await must(['id', '-u', 'crosscred'])).trim()).toMatch(/^\d+$/);
    // Runs inside a Debian with no Node.js at all.
    expect((await box!.exec(['sh', '-c', 'command -v node nodejs'])).stdout).toBe('');
    expect((await must(['crosscred', '--version'])).trim()).toMatch(/\d+\.\d+\.\d+/);
    // Never even tried: a start that failed would have left "inactive" with a non-zero exit timestamp.
    expect(await show('ActiveState')).toBe('inactive');
    expect(await show('InactiveExitTimestampMonotonic')).toBe('0');
    expect(await show('InactiveExitTimestampMonotonic', 'crosscred-issuer.service')).toBe('0');
    expect(await metadataAddresses()).toEqual([]);

    // Enabled but still the placeholder: installing again (as an upgrade would) must not start it either.
    await must(['systemctl', 'enable', UNIT]);
    await must(['dpkg', '-i', `/var/tmp/${basename(deb)}`]);
    expect(await show('InactiveExitTimestampMonotonic')).toBe('0');
    await must(['systemctl', 'disable', UNIT]);

    // Started by hand while still the placeholder, the main process refuses at once (exit 78,
    // RestartPreventExitStatus), and so does `systemctl start`: ExecStartPost's wait-ready gives up
    // as soon as the daemon ($MAINPID) has exited, instead of holding the unit "activating" until
    // its 60 s timeout. Stopping takes the metadata address away again.
    const startedAt = Date.now();
    const start = await box!.exec(['systemctl', 'start', UNIT], { timeoutMs: STEP_TIMEOUT_MS });
    expect(start.code).not.toBe(0);
    expect(Date.now() - startedAt).toBeLessThan(45_000);
    expect(await show('ExecMainStatus')).toBe('78');
    const journal = await must(['journalctl', '--no-pager', '-o', 'cat', '-u', UNIT]);
    expect(journal).toContain('still holds the shipped placeholder settings');
    await must(['systemctl', 'stop', UNIT]);
    expect(await show('NRestarts')).toBe('0');
    expect(await metadataAddresses()).toEqual([]);
    await must(['systemctl', 'reset-failed', UNIT]);
  });

  it('starts with `systemctl enable --now` once configured, and the AWS CLI v2 with no configuration gets credentials at 169.254.169.254', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    // A web-identity token as a platform would write it; moto's STS accepts any, the daemon reads its expiry.
    const { privateKey } = await generateKeyPair('ES256');
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'test' })
      .setIssuer('https://oidc.example.com')
      .setSubject('vm-app')
      .setAudience('sts.amazonaws.com')
      .setIssuedAt()
      .setExpirationTime('2h')
      .sign(privateKey);
    await must(['sh', '-c', 'umask 027 && cat >/etc/crosscred/token && chgrp crosscred /etc/crosscred/token'], { input: token });
    // Written through the installed file, so its mode and owner stay the package's.
    await must(['sh', '-c', 'cat >/etc/crosscred/crosscred.env'], { input: ENV_FILE });
    let t = Date.now();
    await must(['systemctl', 'enable', '--now', UNIT]);
    timings['start'] = Date.now() - t;
    expect(await show('ActiveState')).toBe('active');

    t = Date.now();
    const creds = await credentialsFromImds();
    timings['awsCli'] = Date.now() - t;
    expect(creds.AccessKeyId).toMatch(/^ASIA/);
    expect(new Date(creds.Expiration).getTime()).toBeGreaterThan(Date.now() + 15 * MINUTE);
    // And STS knows them as the role's session: the CLI signs with exactly what crosscred served.
    const who = await awsCliRetried(['sts', 'get-caller-identity', '--endpoint-url', STS_URL, '--region', 'us-east-1', '--output', 'json']);
    expect((JSON.parse(who) as { Arn: string }).Arn).toMatch(/^arn:aws:sts::111122223333:assumed-role\/vm-app\//);
  });

  it('keeps serving the cached credentials through `systemctl reload`', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const pid = await show('MainPID');
    const before = await credentialsFromImds();
    await must(['systemctl', 'reload', UNIT]);
    expect(await show('ActiveState')).toBe('active');
    expect(await show('MainPID')).toBe(pid);
    expect((await credentialsFromImds()).AccessKeyId).toBe(before.AccessKeyId);
  });

  it('is restarted by systemd after `kill -9` of its main process, and serves again', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const pid = await show('MainPID');
    const restarts = Number(await show('NRestarts'));
    await must(['kill', '-9', pid]);
    const t = Date.now();
    await activeWithNewMainPid(pid, STEP_TIMEOUT_MS);
    timings['restartAfterKill'] = Date.now() - t;
    expect(Number(await show('NRestarts'))).toBe(restarts + 1);
    expect((await credentialsFromImds()).AccessKeyId).toMatch(/^ASIA/);
  });

  it('keeps the edited env file through an upgrade to a newer version, and restarts the running service', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    // The same package with a higher version: dpkg runs the upgrade paths of every scriptlet.
    const tree = join(scratch, 'upgrade');
    await run('dpkg-deb', ['-R', deb, tree]);
    const control = await readFile(join(tree, 'DEBIAN/control'), 'utf8');
    const version = /^Version: (.+)$/m.exec(control)![1]!;
    const newer = `${version}+upgrade1`;
    await run('sh', ['-c', 'sed -i "s/^Version: .*/Version: $NEWER/" "$TREE/DEBIAN/control"'], { env: { PATH: '/usr/bin:/bin', NEWER: newer, TREE: tree } });
    const upgradeDeb = join(scratch, `crosscred_${newer}_amd64.deb`);
    await run('dpkg-deb', ['-Znone', '-b', tree, upgradeDeb], { timeout: STEP_TIMEOUT_MS });
    await rm(tree, { recursive: true, force: true });
    await box!.copyIn(upgradeDeb, '/var/tmp/upgrade.deb');

    const pid = await show('MainPID');
    // stdin is closed: a conffile question would fail dpkg instead of waiting.
    await must(['dpkg', '-i', '/var/tmp/upgrade.deb']);
    expect((await must(['dpkg-query', '-W', 'crosscred'])).trim()).toBe(`crosscred\t${newer}`);
    expect(await must(['cat', '/etc/crosscred/crosscred.env'])).toBe(ENV_FILE);
    expect((await must(['stat', '-c', '%a', '/etc/crosscred/crosscred.env'])).trim()).toBe('600');
    await activeWithNewMainPid(pid, STEP_TIMEOUT_MS);
    expect((await credentialsFromImds()).AccessKeyId).toMatch(/^ASIA/);
  });

  it('`systemctl stop` removes the metadata address and the nftables rules', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    expect(await metadataAddresses()).toEqual(['169.254.169.254/32']);
    expect((await nftTables()).some((t) => t.includes('crosscred'))).toBe(true);
    await must(['systemctl', 'stop', UNIT]);
    expect(await show('ActiveState')).toBe('inactive');
    expect(await metadataAddresses()).toEqual([]);
    expect((await nftTables()).filter((t) => t.includes('crosscred'))).toEqual([]);
  });

  it('`dpkg --purge` of a running service stops it, removes its address and rules, and every file', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    await must(['systemctl', 'start', UNIT]);
    expect(await metadataAddresses()).toEqual(['169.254.169.254/32']);
    const files = (await must(['dpkg-query', '-L', 'crosscred'])).split('\n').filter((f) => f.startsWith('/'));
    const regular = (await must(['sh', '-c', 'for f in "$@"; do [ -f "$f" ] && ! [ -L "$f" ] && echo "$f"; done; true', 'sh', ...files]))
      .split('\n')
      .filter(Boolean);
    expect(regular).toEqual(expect.arrayContaining(['/usr/bin/crosscred', '/etc/crosscred/crosscred.env']));
    // The service's state directory (StateDirectory=, under /var/lib/private with DynamicUser=).
    const stateDirs = ['/var/lib/crosscred', '/var/lib/private/crosscred'];
    const existing = async (paths: string[]) =>
      (await must(['sh', '-c', 'for f in "$@"; do { [ -e "$f" ] || [ -L "$f" ]; } && echo "$f"; done; true', 'sh', ...paths])).split('\n').filter(Boolean);
    expect(await existing(stateDirs)).not.toEqual([]);

    await must(['dpkg', '--purge', 'crosscred']);
    expect(['inactive', '']).toContain(await show('ActiveState'));
    expect(await metadataAddresses()).toEqual([]);
    expect((await nftTables()).filter((t) => t.includes('crosscred'))).toEqual([]);
    expect(await existing([...regular, ...stateDirs])).toEqual([]);
    // dpkg keeps what the operator added (the token); nothing of the package's stays beside it.
    const etc = await box!.exec(['find', '/etc/crosscred', '-mindepth', '1']);
    expect(etc.stdout.split('\n').filter(Boolean)).toEqual(etc.code === 0 ? ['/etc/crosscred/token'] : []);
    expect((await box!.exec(['dpkg-query', '-W', 'crosscred'])).code).not.toBe(0);
  });
});

describe('the harness: stop()', { timeout: STEP_TIMEOUT_MS }, () => {
  it('powers the container off and leaves no mount, process or scratch root behind', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const { root, pid } = box!;
    const t = Date.now();
    const { poweredOff } = await box!.stop();
    timings['stop'] = Date.now() - t;
    console.log(`systemd-package: ${JSON.stringify(timings)} (ms)`);
    expect(poweredOff).toBe(true);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(existsSync(root)).toBe(false);
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    expect(mounts).not.toContain(root);
    expect(moto!.exitCode !== null || moto!.signalCode !== null).toBe(true);
  });
});
