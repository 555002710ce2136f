import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, link, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { POD_IDENTITY_IPV4, POD_IDENTITY_IPV6 } from '../../src/protocol/pod-identity.js';
import { REPO_ROOT } from '../support/chain.js';
import { clientAvailable } from '../support/clients.js';
import { ensureRelease } from '../support/release-artifacts.js';

/**
 * The Dockerfile, built and run for real with Debian's buildah (vfs storage, chroot isolation: what
 * works on these machines; `podman run` does not). The image holds the x86_64 single executable of
 * `npm run package` (test/support/release-artifacts.ts builds it once per content) and nothing of
 * Node or node_modules. Its node-agent-init target (the node agent DaemonSet's init container) is
 * built too, and run in a network namespace of its own. No registry is reachable here, so
 * container/build-base-image.sh first assembles local STAND-INS for gcr.io/distroless/cc-debian12
 * and debian:bookworm-slim (debootstrap, cached between runs, as the images are); the two images
 * built here are removed afterwards.
 *
 * Needs root, buildah, debootstrap and a Debian mirror. Skipped with the reason where root, buildah
 * or debootstrap are missing, unless CROSSCRED_E2E_STRICT=1.
 */
const run = promisify(execFile);
const BUILDAH = ['--storage-driver', 'vfs'];
const IMAGE = `localhost/crosscred:e2e-${process.pid}`;
const NS = `crosscred-img-${process.pid}`;
const INIT_IMAGE = `localhost/crosscred-node-agent-init:e2e-${process.pid}`;
/** What `buildah run` grants by default (containers.conf); the init container needs none of them. */
const BUILDAH_DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_NET_BIND_SERVICE',
  'CAP_SETFCAP',
  'CAP_SETGID',
  'CAP_SETPCAP',
  'CAP_SETUID',
  'CAP_SYS_CHROOT',
];
/** The node for the agent run as the DaemonSet runs it: the init image first, then the agent. */
const AGENT_NS = `crosscred-agent-${process.pid}`;
/** The node agent container's securityContext.capabilities.add in k8s/node-agent, as buildah run options. */
const AGENT_CAPABILITIES = ['CAP_NET_BIND_SERVICE', 'CAP_SETGID', 'CAP_SETUID'];
/** The "node" the init image sets up: a namespace of its own, never the host's interfaces. */
const INIT_NS = `crosscred-init-${process.pid}`;
const BINARY = '/usr/bin/crosscred';
const MINUTES = 60_000;

let unavailable: string | undefined;
let container: string | undefined;
let mountPoint: string | undefined;
let imageBuilt = false;
let initContainer: string | undefined;
let initMountPoint: string | undefined;
let initImageBuilt = false;
/** The binary the image was built from (release/…-linux-x86_64). */
let releaseBinary: string | undefined;
let context: string | undefined;

async function buildah(args: string[], timeout = 2 * MINUTES): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run('buildah', [...BUILDAH, ...args], { timeout, maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`buildah ${args.join(' ')} failed: ${e.message}\nstdout (tail): ${tail(e.stdout)}\nstderr (tail): ${tail(e.stderr)}`);
  }
}

function tail(text: string | undefined, lines = 40): string {
  return (text ?? '').trimEnd().split('\n').slice(-lines).join('\n');
}

/** Runs a command in the built image, or another working container (host network unless wrapped in `ip netns exec`). */
async function inImage(argv: string[], netns?: string, ctr = container!, runOptions: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const full = ['buildah', ...BUILDAH, 'run', '--isolation', 'chroot', ...runOptions, ctr, '--', ...argv];
  const [cmd, ...args] = netns ? ['ip', 'netns', 'exec', netns, ...full] : full;
  try {
    const { stdout, stderr } = await run(cmd!, args, { timeout: MINUTES, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function unavailableBecause(reason: string): void {
  if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(`${reason}, and CROSSCRED_E2E_STRICT=1 requires the container image test`);
  unavailable = reason;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) return unavailableBecause('building images with buildah (vfs) and debootstrap needs root');
  if (!(await clientAvailable('buildah'))) return unavailableBecause('buildah is not installed (apt-get install buildah)');
  if (!(await clientAvailable('debootstrap'))) return unavailableBecause('debootstrap is not installed (apt-get install debootstrap)');

  let started = Date.now();
  try {
    await run(join(REPO_ROOT, 'container/build-base-image.sh'), [], { timeout: 10 * MINUTES, maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`container/build-base-image.sh failed: ${e.message}\n${tail(e.stderr)}`);
  }
  const baseSeconds = (Date.now() - started) / 1000;

  // The build context as an operator has it after `npm run package`: the Dockerfile, its
  // .dockerignore and release/ with the binary (a hard link to the cached build, where it can be).
  const release = await ensureRelease({ arch: ['x64'], kinds: ['binary'] });
  releaseBinary = release.files.x64!.binary!;
  context = await mkdtemp(join(tmpdir(), 'crosscred-image-context-'));
  await mkdir(join(context, 'release'));
  for (const file of ['Dockerfile', '.dockerignore']) await copyFile(join(REPO_ROOT, file), join(context, file));
  await link(releaseBinary, join(context, 'release', basename(releaseBinary))).catch(() =>
    copyFile(releaseBinary!, join(context!, 'release', basename(releaseBinary!))),
  );
  started = Date.now();
  await buildah(['bud', '--isolation', 'chroot', '--format', 'docker', '-t', IMAGE, context], 10 * MINUTES);
  imageBuilt = true;
  const buildSeconds = (Date.now() - started) / 1000;
  started = Date.now();
  await buildah(['bud', '--isolation', 'chroot', '--format', 'docker', '--target', 'node-agent-init', '-t', INIT_IMAGE, context], 10 * MINUTES);
  initImageBuilt = true;
  const initSeconds = (Date.now() - started) / 1000;
  console.log(
    `container image: stand-in bases ready in ${baseSeconds.toFixed(0)} s, image built in ${buildSeconds.toFixed(0)} s, node-agent-init image in ${initSeconds.toFixed(0)} s`,
  );

  container = (await buildah(['from', IMAGE])).stdout.trim();
  mountPoint = (await buildah(['mount', container])).stdout.trim();
  initContainer = (await buildah(['from', INIT_IMAGE])).stdout.trim();
  initMountPoint = (await buildah(['mount', initContainer])).stdout.trim();
}, 20 * MINUTES);

afterAll(async () => {
  await run('ip', ['netns', 'del', NS]).catch(() => undefined);
  await run('ip', ['netns', 'del', INIT_NS]).catch(() => undefined);
  await run('ip', ['netns', 'del', AGENT_NS]).catch(() => undefined);
  for (const ctr of [container, initContainer]) {
    if (!ctr) continue;
    await buildah(['umount', ctr]).catch(() => undefined);
    await buildah(['rm', ctr]).catch(() => undefined);
  }
  if (imageBuilt) await buildah(['rmi', '-f', IMAGE]).catch(() => undefined);
  if (initImageBuilt) await buildah(['rmi', '-f', INIT_IMAGE]).catch(() => undefined);
  if (context) await rm(context, { recursive: true, force: true });
}, 2 * MINUTES);

describe('the container image (Dockerfile, the single executable on a stand-in distroless base)', () => {
  it('runs as numeric non-root 10001, serves by default through an exec-form entrypoint, exposes both ports and keeps its health check', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const info = JSON.parse((await buildah(['inspect', '--type', 'image', IMAGE])).stdout) as {
      Docker: {
        config: {
          User?: string;
          Entrypoint?: string[];
          Cmd?: string[];
          Env?: string[];
          ExposedPorts?: Record<string, unknown>;
          Healthcheck?: { Test?: string[] };
        };
      };
      OCIv1: { config: { User?: string } };
    };
    const config = info.Docker.config;
    expect(config.User).toBe('10001:10001');
    expect(info.OCIv1.config.User).toBe('10001:10001');
    expect(config.Entrypoint).toEqual([BINARY]);
    expect(config.Cmd).toEqual(['serve']);
    // The young-generation cap of the systemd unit and `npm start`: V8 flags reach a single executable only this way.
    expect(config.Env).toContain('NODE_OPTIONS=--max-semi-space-size=2');
    expect(Object.keys(config.ExposedPorts ?? {}).sort()).toEqual(['8170/tcp', '8171/tcp']);
    // Exec form ("CMD", not "CMD-SHELL"): the image has no shell to run it with.
    expect(config.Healthcheck?.Test).toEqual(['CMD', BINARY, 'wait-ready', '--alive', '--timeout-ms', '4000']);
  });

  it('prints the help, and runs the whole demo chain inside the image and exits 0', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const help = await inImage([BINARY, '--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain('Usage: crosscred <command>');
    const demo = await inImage([BINARY, 'demo', '--check', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0']);
    expect(demo.code, `stdout:\n${demo.stdout}\nstderr:\n${tail(demo.stderr)}`).toBe(0);
    expect(demo.stdout).toContain('Self-check passed');
  });

  it('holds the release binary byte for byte, owned by root, and no Node, node_modules, shell or package manager', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const inside = join(mountPoint!, BINARY);
    const info = await stat(inside);
    expect([info.uid, info.gid]).toEqual([0, 0]);
    expect(info.mode & 0o022).toBe(0);
    expect(info.mode & 0o111).not.toBe(0);
    const digest = async (path: string) =>
      createHash('sha256')
        .update(await readFile(path))
        .digest('hex');
    expect(await digest(inside)).toBe(await digest(releaseBinary!));
    // No `ip` either: that is why the node agent's init container has an image of its own.
    for (const path of [
      'app',
      'nodejs',
      'usr/local/bin/node',
      'usr/bin/node',
      'bin/sh',
      'usr/bin/sh',
      'bin/bash',
      'usr/bin/apt-get',
      'usr/bin/dpkg',
      'usr/sbin/ip',
      'usr/bin/ip',
    ]) {
      expect(existsSync(join(mountPoint!, path)), path).toBe(false);
    }
    // The glob in COPY matched one binary: nothing else of crosscred's is in the image.
    expect((await readdir(join(mountPoint!, 'usr/bin'))).filter((name) => name.startsWith('crosscred'))).toEqual(['crosscred']);
  });

  it("passes the image's own health check while the daemon is up, as user 10001, and fails it once it is down", async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    // Its own network namespace, so the image's fixed admin port 8171 is free whatever runs here.
    try {
      await run('ip', ['netns', 'add', NS]);
      await run('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    } catch (err) {
      const reason = `cannot create a network namespace here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`;
      if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(reason);
      ctx.skip(reason);
    }
    const info = JSON.parse((await buildah(['inspect', '--type', 'image', IMAGE])).stdout) as { Docker: { config: { Healthcheck: { Test: string[] } } } };
    const check = info.Docker.config.Healthcheck.Test.slice(1);
    // The daemon (the demo chain on the default ports) in one run of the image, the health check in
    // another, both in the namespace: as a runtime runs a check beside the entrypoint.
    const demo = spawn('ip', ['netns', 'exec', NS, 'buildah', ...BUILDAH, 'run', '--isolation', 'chroot', container!, '--', BINARY, 'demo'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    demo.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    demo.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    try {
      const deadline = Date.now() + 2 * MINUTES;
      while (!out.includes('crosscred demo is running') && Date.now() < deadline && demo.exitCode === null) await new Promise((r) => setTimeout(r, 100));
      expect(out, tail(out)).toContain('crosscred demo is running');
      const up = await inImage(check, NS);
      expect(up.code, up.stderr).toBe(0);
      // The daemon's process, seen from the host: the image's numeric user, not root.
      expect(await uidOf(`${BINARY}\0demo`)).toBe(10001);
    } finally {
      demo.kill('SIGTERM');
      await new Promise((r) => (demo.exitCode !== null ? r(undefined) : demo.once('exit', r)));
    }
    await killAll(`${BINARY}\0demo`);
    const down = await inImage(check, NS);
    expect(down.code).toBe(1);
  });
});

describe("the node-agent-init image (the Dockerfile's node-agent-init target, on a stand-in debian:bookworm-slim)", () => {
  interface ImageConfig {
    User?: string;
    Entrypoint?: string[];
    Cmd?: string[];
    Env?: string[];
  }
  const initConfig = async (): Promise<ImageConfig> =>
    (JSON.parse((await buildah(['inspect', '--type', 'image', INIT_IMAGE])).stdout) as { Docker: { config: ImageConfig } }).Docker.config;

  it('runs as root, with the crosscred entrypoint and net-setup --node-agent as its command, the release binary byte for byte and iproute2', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const config = await initConfig();
    expect(config.User).toBe('0:0');
    expect(config.Entrypoint).toEqual([BINARY]);
    expect(config.Cmd).toEqual(['net-setup', '--node-agent']);
    expect(config.Env).toContain('NODE_OPTIONS=--max-semi-space-size=2');
    const inside = join(initMountPoint!, BINARY);
    const info = await stat(inside);
    expect([info.uid, info.gid]).toEqual([0, 0]);
    expect(info.mode & 0o022).toBe(0);
    const digest = async (path: string) =>
      createHash('sha256')
        .update(await readFile(path))
        .digest('hex');
    expect(await digest(inside)).toBe(await digest(releaseBinary!));
    // The image's own `ip` (chroot isolation: nothing of the host's /usr is visible).
    const ip = await inImage(['ip', '-V'], undefined, initContainer!);
    expect(ip.code, ip.stderr).toBe(0);
    expect(ip.stdout).toMatch(/iproute2/);
    const id = await inImage(['id', '-u'], undefined, initContainer!);
    expect(id.stdout.trim()).toBe('0');
  });

  it('adds both node agent addresses in a network namespace when run as the image says, idempotently, and leaves the host alone', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    // A "node" of our own: net-setup changes links, and must never reach the host's.
    try {
      await run('ip', ['netns', 'add', INIT_NS]);
      await run('ip', ['-n', INIT_NS, 'link', 'set', 'lo', 'up']);
    } catch (err) {
      const reason = `cannot create a network namespace here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`;
      if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(reason);
      ctx.skip(reason);
    }
    const hostBefore = await addresses();
    const config = await initConfig();
    // What a runtime runs: the entrypoint with the command, as the image's user, and with the
    // capabilities the DaemonSet gives the init container: every one dropped but NET_ADMIN.
    const argv = [...config.Entrypoint!, ...config.Cmd!];
    // (buildah's --cap-drop ALL drops the added one too: drop its default set by name instead.)
    const asDaemonSet = ['--cap-add', 'CAP_NET_ADMIN', '--cap-drop', BUILDAH_DEFAULT_CAPABILITIES.join(',')];
    const capabilities = await inImage(['grep', '-E', '^Cap(Eff|Bnd):', '/proc/self/status'], INIT_NS, initContainer!, asDaemonSet);
    // NET_ADMIN (bit 12) and nothing else, effective and bounding.
    expect(capabilities.stdout.trim().split('\n')).toEqual(['CapEff:\t0000000000001000', 'CapBnd:\t0000000000001000']);
    // Without NET_ADMIN (buildah's default set lacks it, as a pod's does) root changes nothing.
    const refused = await inImage(argv, INIT_NS, initContainer!);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/not permitted/);
    expect(await addresses(INIT_NS)).not.toContain(`${POD_IDENTITY_IPV4}/32`);
    const first = await inImage(argv, INIT_NS, initContainer!, asDaemonSet);
    expect(first.code, `stdout:\n${first.stdout}\nstderr:\n${tail(first.stderr)}`).toBe(0);
    const after = await addresses(INIT_NS);
    expect(after).toEqual(expect.arrayContaining([`${POD_IDENTITY_IPV4}/32`, `${POD_IDENTITY_IPV6}/128`]));
    // A restarted init container (a node's agent pod replaced) finds them and changes nothing.
    const second = await inImage(argv, INIT_NS, initContainer!, asDaemonSet);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`${POD_IDENTITY_IPV4}/32 is already on`);
    expect(await addresses(INIT_NS)).toEqual(after);
    expect(await addresses()).toEqual(hostBefore);
  });
});

describe('the node agent DaemonSet on these images (k8s/node-agent: init container, then the agent as uid 0 with --run-as)', () => {
  interface DaemonSetContainer {
    args: string[];
    securityContext: { runAsUser: number; runAsGroup: number; capabilities: { add: string[] } };
  }

  /** Only the capabilities `keep` (names without CAP_), as `buildah run` options. */
  const onlyCapabilities = (keep: readonly string[]) => {
    const add = keep.map((c) => `CAP_${c}`);
    return ['--cap-add', add.join(','), '--cap-drop', BUILDAH_DEFAULT_CAPABILITIES.filter((c) => !add.includes(c)).join(',')];
  };

  it('binds port 80 on both addresses as root with the three capabilities it is given, then serves as 10001 holding none', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const manifest = parseYaml(await readFile(join(REPO_ROOT, 'k8s/node-agent/daemonset.yaml'), 'utf8')) as {
      spec: { template: { spec: { containers: DaemonSetContainer[] } } };
    };
    const agentContainer = manifest.spec.template.spec.containers[0]!;
    const { runAsUser, runAsGroup, capabilities } = agentContainer.securityContext;
    expect(capabilities.add.map((c) => `CAP_${c}`).sort()).toEqual(AGENT_CAPABILITIES);
    try {
      await run('ip', ['netns', 'add', AGENT_NS]);
      await run('ip', ['-n', AGENT_NS, 'link', 'set', 'lo', 'up']);
    } catch (err) {
      const reason = `cannot create a network namespace here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`;
      if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(reason);
      ctx.skip(reason);
    }
    // The init container, as in the pod: its image's entrypoint and command, NET_ADMIN only.
    const setup = await inImage([BINARY, 'net-setup', '--node-agent'], AGENT_NS, initContainer!, onlyCapabilities(['NET_ADMIN']));
    expect(setup.code, setup.stderr).toBe(0);
    // The agent container: the manifest's arguments, user and capabilities, the issuer and region
    // its ConfigMap would give. It binds, switches users and waits for requests.
    const args = agentContainer.args.map((a) => (a === '$(CROSSCRED_ALLOWED_ISSUER)' ? 'https://issuer.example.invalid/e2e' : a));
    const runAs = ['--user', `${runAsUser}:${runAsGroup}`, '--env', 'AWS_REGION=us-east-1'];
    const start = (caps: string[]) =>
      spawn('ip', ['netns', 'exec', AGENT_NS, 'buildah', ...BUILDAH, 'run', '--isolation', 'chroot', ...runAs, ...caps, container!, '--', BINARY, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    // Without SETUID and SETGID root binds port 80 but cannot switch users, and stops saying so.
    const refused = start(onlyCapabilities(['NET_BIND_SERVICE']));
    let refusedOut = '';
    refused.stdout.on('data', (d: Buffer) => (refusedOut += d.toString()));
    refused.stderr.on('data', (d: Buffer) => (refusedOut += d.toString()));
    const refusedCode = await new Promise<number | null>((r) => refused.once('exit', (code) => r(code)));
    expect(refusedCode, tail(refusedOut)).not.toBe(0);
    expect(refusedOut).toMatch(/PRIVILEGE_DROP_FAILED/);
    await killAll(`${BINARY}\0node-agent`);

    const agentProcess = start(onlyCapabilities(capabilities.add));
    let out = '';
    agentProcess.stdout.on('data', (d: Buffer) => (out += d.toString()));
    agentProcess.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const deadline = Date.now() + MINUTES;
      while (!out.includes('now running as an unprivileged user') && Date.now() < deadline && agentProcess.exitCode === null) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(out, tail(out)).toContain('now running as an unprivileged user');
      const [pid] = await processesStartingWith(`${BINARY}\0node-agent`);
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      expect(/^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)?.slice(1)).toEqual(['10001', '10001', '10001', '10001']);
      expect(/^Gid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)?.slice(1)).toEqual(['10001', '10001', '10001', '10001']);
      for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) expect(new RegExp(`^${set}:\\s+(\\w+)`, 'm').exec(status)?.[1], set).toBe('0000000000000000');
      // Both listeners answer on port 80 (a request without a token is refused, which is an answer).
      for (const url of [`http://${POD_IDENTITY_IPV4}/v1/credentials/x`, `http://[${POD_IDENTITY_IPV6}]/v1/credentials/x`]) {
        const script = `fetch(${JSON.stringify(url)}).then((r) => process.stdout.write(String(r.status)), (e) => { process.stderr.write(String(e.cause ?? e)); process.exit(1); })`;
        const { stdout } = await run('ip', ['netns', 'exec', AGENT_NS, process.execPath, '-e', script], { timeout: 20_000 });
        expect(Number(stdout), url).toBeGreaterThanOrEqual(400);
      }
    } finally {
      agentProcess.kill('SIGTERM');
      await new Promise((r) => (agentProcess.exitCode !== null ? r(undefined) : agentProcess.once('exit', r)));
      await killAll(`${BINARY}\0node-agent`);
    }
  });
});

/** The addresses (`address/prefix`) on every link of a network namespace, or of the host without one. */
async function addresses(netns?: string): Promise<string[]> {
  const { stdout } = await run('ip', [...(netns ? ['-n', netns] : []), '-o', 'addr', 'show']);
  return stdout
    .split('\n')
    .map((line) => /\sinet6?\s+(\S+)/.exec(line)?.[1])
    .filter((a): a is string => a !== undefined);
}

/** The processes whose command line starts with `prefix` (its arguments NUL-separated, as in /proc). */
async function processesStartingWith(prefix: string): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.startsWith(prefix)) pids.push(Number(pid));
  }
  return pids;
}

/** The real uid of the first process whose command line starts with `prefix`, from /proc. */
async function uidOf(prefix: string): Promise<number | undefined> {
  const [pid] = await processesStartingWith(prefix);
  if (pid === undefined) return undefined;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
  return uid === undefined ? undefined : Number(uid);
}

/** buildah run does not always pass SIGTERM on: ends what is left of the daemon, and waits until it is gone. */
async function killAll(prefix: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const pids = await processesStartingWith(prefix);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Gone meanwhile.
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`a process "${prefix.replace('\0', ' ')}" outlived SIGTERM for 30 s`);
}
