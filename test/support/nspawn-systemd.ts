import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, mkdtemp, readdir, readFile, realpath, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

/**
 * A real systemd as PID 1, for tests: a Debian bookworm root made once with debootstrap (cached in
 * /var/cache/crosscred-nspawn, like the container-image test's base images), overlaid per test so
 * that nothing a test does reaches the cache, and booted with systemd-nspawn. What works on these
 * machines, tried: `--keep-unit` (this machine's PID 1 is not systemd, so nspawn cannot ask it for
 * a scope), `--register=no`, `--private-network` (the container gets its own loopback, nothing else).
 *
 * exec() runs a command inside the container (all its namespaces: its files, its systemd, its
 * dpkg); execInNetwork() runs a HOST program in the container's network only, as a client on that
 * VM would (the host's AWS CLI, say). stop() always leaves nothing behind: poweroff, then kill,
 * then unmount and remove the scratch root.
 *
 * Needs root, systemd-nspawn (Debian systemd-container), debootstrap, nsenter (util-linux) and
 * flock. A Debian mirror is needed once, for debootstrap: the one apt on this machine uses, or
 * CROSSCRED_DEBIAN_MIRROR.
 */
const run = promisify(execFile);

export const NSPAWN_CACHE = process.env['CROSSCRED_NSPAWN_CACHE'] ?? '/var/cache/crosscred-nspawn';
const SUITE = 'bookworm';
/** What the root holds besides minbase. A change here makes a new cached root (the old one stays until deleted). */
const INCLUDE = ['systemd', 'systemd-sysv', 'dbus', 'iproute2', 'nftables', 'adduser', 'procps', 'ca-certificates'];
/** Bumped by hand when the way the root is prepared changes. */
const ROOT_RECIPE = 1;

const SECOND = 1000;
/** debootstrap took 45 s alone and 2 min 13 s on a busy 2-core machine; another process may hold the lock for as long. */
const DEBOOTSTRAP_TIMEOUT_MS = 15 * 60 * SECOND;
/** From nspawn's start to `systemctl is-system-running` settling (0.3 s idle; far more on a loaded machine). */
const BOOT_TIMEOUT_MS = 90 * SECOND;
const POWEROFF_TIMEOUT_MS = 30 * SECOND;
const KILL_TIMEOUT_MS = 10 * SECOND;
const DEFAULT_COMMAND_TIMEOUT_MS = 60 * SECOND;
const MAX_KEPT_OUTPUT_CHARS = 64 * 1024;

/** The environment of every command run inside the container: nothing of the host's. */
const CONTAINER_ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
  DEBIAN_FRONTEND: 'noninteractive',
  SYSTEMD_PAGER: 'cat',
  SYSTEMD_COLORS: '0',
  TERM: 'dumb',
};

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  timeoutMs?: number;
  /** Written to the command's stdin. */
  input?: string;
  /** For execInNetwork: the host program's whole environment (default: PATH only). Inside the container the environment is fixed. */
  env?: Record<string, string>;
}

/**
 * Why a systemd container cannot run here, or undefined when it can. With CROSSCRED_E2E_STRICT=1
 * (CI, where .ci/run installs every tool) a missing piece throws instead, so the test fails.
 */
export async function nspawnUnavailable(): Promise<string | undefined> {
  const missing = (why: string): string => {
    if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(`${why}, and CROSSCRED_E2E_STRICT=1 requires the systemd container tests`);
    return why;
  };
  if (process.getuid?.() !== 0) return missing('not root: debootstrap, systemd-nspawn and nsenter need root');
  const tools: Array<[string, string[], string]> = [
    ['systemd-nspawn', ['--version'], 'systemd-nspawn is not installed (apt-get install systemd-container)'],
    ['debootstrap', ['--version'], 'debootstrap is not installed (apt-get install debootstrap)'],
    ['nsenter', ['--version'], 'nsenter is not installed (apt-get install util-linux)'],
    ['flock', ['--version'], 'flock is not installed (apt-get install util-linux)'],
  ];
  for (const [tool, args, why] of tools) {
    try {
      await run(tool, args, { timeout: 20 * SECOND });
    } catch {
      return missing(why);
    }
  }
  return undefined;
}

/** The Debian mirror for debootstrap: CROSSCRED_DEBIAN_MIRROR, else the one apt here uses for bookworm main, else debootstrap's default. */
async function mirror(): Promise<string | undefined> {
  if (process.env['CROSSCRED_DEBIAN_MIRROR']) return process.env['CROSSCRED_DEBIAN_MIRROR'];
  try {
    const { stdout } = await run('apt-get', [
      'indextargets',
      '--format',
      '$(SITE)',
      'Identifier: Packages',
      `Codename: ${SUITE}`,
      'Label: Debian',
      'Component: main',
    ]);
    return stdout.split('\n')[0]?.trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The cached Debian root, made once: under an exclusive lock (flock, released by the kernel if the
 * holder dies) so that parallel test files wait for one debootstrap instead of racing, into a
 * partial directory renamed into place only when complete. Its name carries a hash of the include
 * list and recipe, so a changed list makes a new root while a running test keeps the old one.
 * Returns the root's path and how long this call took to get it (ms).
 */
export async function ensureDebianRoot(): Promise<{ root: string; ms: number }> {
  const started = Date.now();
  const stamp = createHash('sha256')
    .update(JSON.stringify({ suite: SUITE, variant: 'minbase', include: INCLUDE, recipe: ROOT_RECIPE }))
    .digest('hex')
    .slice(0, 12);
  const root = join(NSPAWN_CACHE, `${SUITE}-systemd-${stamp}`);
  const complete = join(root, '.crosscred-complete');
  if (existsSync(complete)) return { root, ms: Date.now() - started };
  await mkdir(NSPAWN_CACHE, { recursive: true });
  const site = await mirror();
  const script = `
    set -eu
    [ -f "$ROOT/.crosscred-complete" ] && exit 0
    # A debootstrap killed half-way leaves its /proc and /sys mounts in the partial root.
    findmnt -rn -o TARGET | grep -F "$ROOT.partial/" | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$ROOT.partial"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOT.partial" $SITE >"$ROOT.log" 2>&1 \\
      || { tail -n 30 "$ROOT.log" >&2; exit 1; }
    # No package lists or downloaded packages: the tests install from files.
    rm -rf "$ROOT.partial"/var/lib/apt/lists/* "$ROOT.partial"/var/cache/apt/*.bin "$ROOT.partial"/var/cache/apt/archives/*.deb
    # A fresh machine id at every boot (systemd makes a transient one when the file is empty).
    : >"$ROOT.partial/etc/machine-id"
    echo crosscred-test >"$ROOT.partial/etc/hostname"
    printf '%s\\n' "suite=$SUITE" "include=$INCLUDE" "site=\${SITE:-debootstrap default}" >"$ROOT.partial/.crosscred-complete"
    rm -rf --one-file-system "$ROOT"
    mv "$ROOT.partial" "$ROOT"
  `;
  try {
    await run('flock', ['--exclusive', '--timeout', String(DEBOOTSTRAP_TIMEOUT_MS / SECOND), join(NSPAWN_CACHE, '.lock'), 'sh', '-c', script], {
      timeout: 2 * DEBOOTSTRAP_TIMEOUT_MS,
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ROOT: root, SUITE, INCLUDE: INCLUDE.join(','), SITE: site ?? '' },
      maxBuffer: 4 << 20,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`could not make the Debian root ${root}: ${e.message}\n${e.stderr ?? ''}`);
  }
  return { root, ms: Date.now() - started };
}

let containers = 0;

/** One booted container. Make it with SystemdContainer.boot(); always call stop(). */
export class SystemdContainer {
  /** The container's root as the host sees it: files written here appear inside (not under /tmp, a tmpfs in there). */
  readonly root: string;
  readonly name: string;
  /** The host PID of the container's PID 1 (systemd). */
  pid = 0;
  /** How the root was made for this container: an overlay on the cache, or a copy where overlayfs cannot be mounted. */
  rootKind: 'overlay' | 'copy' = 'overlay';
  readonly #scratch: string;
  readonly #cgroups: string[] = [];
  readonly #helpers: ChildProcess[] = [];
  #nspawn: ChildProcess | undefined;
  #nspawnExited: Promise<void> = Promise.resolve();
  #output = '';
  #mounted = false;
  #stopped = false;
  readonly #onExit = () => this.#killSync();

  private constructor(scratch: string, name: string) {
    this.#scratch = scratch;
    this.name = name;
    this.root = join(scratch, 'root');
  }

  /**
   * Makes a scratch root from the cached one and boots systemd in it; resolves once
   * `systemctl is-system-running` has settled (running or degraded; see `state`). On any failure
   * what was made is removed before the error is thrown.
   */
  static async boot(): Promise<SystemdContainer & { state: string; timings: { rootMs: number; scratchMs: number; bootMs: number } }> {
    const { root: cached, ms: rootMs } = await ensureDebianRoot();
    await sweepStale();
    const scratch = await mkdtemp(join(tmpdir(), 'crosscred-nspawn-'));
    const name = `crosscred-${process.pid}-${++containers}`;
    const container = new SystemdContainer(scratch, name);
    process.once('exit', container.#onExit);
    try {
      let t = Date.now();
      await container.#makeRoot(cached);
      await container.#saveState();
      const scratchMs = Date.now() - t;
      t = Date.now();
      const state = await container.#boot();
      return Object.assign(container, { state, timings: { rootMs, scratchMs, bootMs: Date.now() - t } });
    } catch (err) {
      const output = container.output();
      await container.stop().catch(() => undefined);
      throw new Error(`${(err as Error).message}\nsystemd-nspawn output (tail):\n${output.split('\n').slice(-30).join('\n')}`);
    }
  }

  /** An overlay (instant, and the cached root stays untouched), or a copy where overlayfs cannot be mounted. */
  async #makeRoot(cached: string): Promise<void> {
    const upper = join(this.#scratch, 'upper');
    const work = join(this.#scratch, 'work');
    await Promise.all([mkdir(this.root), mkdir(upper), mkdir(work)]);
    try {
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${cached},upperdir=${upper},workdir=${work}`, this.root]);
      this.#mounted = true;
      this.rootKind = 'overlay';
    } catch {
      await run('cp', ['-a', '--reflink=auto', `${cached}/.`, this.root], { timeout: 5 * 60 * SECOND });
      this.rootKind = 'copy';
    }
  }

  async #boot(): Promise<string> {
    // nspawn with --keep-unit makes payload/ and supervisor/ cgroups under its own cgroup. Without
    // a systemd on the host every process sits in the root cgroup, so two containers at once
    // would share them: give each nspawn a cgroup of its own first (only where PID 1 is not
    // systemd, which owns the tree otherwise).
    const hostHasSystemd = (await readFile('/proc/1/comm', 'utf8').catch(() => '')).trim() === 'systemd';
    if (!hostHasSystemd) {
      for (const hierarchy of ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified']) {
        if (!existsSync(join(hierarchy, 'cgroup.procs'))) continue;
        const dir = join(hierarchy, this.name);
        await mkdir(dir, { recursive: true });
        this.#cgroups.push(dir);
      }
      if (this.#cgroups.length === 0 && (await isCgroup2('/sys/fs/cgroup'))) {
        await mkdir(join('/sys/fs/cgroup', this.name), { recursive: true });
        this.#cgroups.push(join('/sys/fs/cgroup', this.name));
      }
    }
    const args = [
      '-D',
      this.root,
      `--machine=${this.name}`,
      '--boot',
      '--register=no',
      '--keep-unit',
      '--private-network',
      '--console=pipe',
      '--link-journal=no',
    ];
    await this.#saveState();
    // The shell moves itself into the new cgroups, then becomes nspawn.
    const child = spawn('sh', ['-c', 'for cg in $CGROUPS; do echo $$ >"$cg/cgroup.procs" || exit 97; done; exec "$@"', 'sh', 'systemd-nspawn', ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, CGROUPS: this.#cgroups.join(' ') },
    });
    this.#nspawn = child;
    this.#nspawnExited = new Promise((resolve) => child.once('exit', () => resolve()));
    const keep = (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString('utf8')).slice(-MAX_KEPT_OUTPUT_CHARS);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let exitCode: number | null | undefined;
    child.once('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : null);
    });

    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    const alive = () => {
      if (exitCode !== undefined) throw new Error(`systemd-nspawn exited (${exitCode}) before systemd was up`);
      if (Date.now() > deadline) throw new Error(`systemd did not come up within ${BOOT_TIMEOUT_MS / SECOND} s`);
    };
    // PID 1 of the container: nspawn's child whose PID in its own namespace is 1, once it runs systemd.
    for (;;) {
      alive();
      const pid = await containerInit(child.pid!);
      if (pid) {
        this.pid = pid;
        await this.#saveState();
        break;
      }
      await pause(50);
    }
    // Settled: "running", or "degraded" when a unit failed. Before D-Bus is up systemctl fails; while booting it says "starting".
    for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
      alive();
      const r = await this.exec(['systemctl', 'is-system-running'], { timeoutMs: 10 * SECOND });
      const last = r.stdout.trim() || r.stderr.trim();
      if (last === 'running' || last === 'degraded') return last;
      if (Date.now() + wait > deadline) throw new Error(`systemd did not settle within ${BOOT_TIMEOUT_MS / SECOND} s (is-system-running: ${last})`);
      await pause(wait);
    }
  }

  /** What sweepStale() needs to clean up after a test process that died without stop(). */
  async #saveState(): Promise<void> {
    const state: StaleState = {
      ownerPid: process.pid,
      init: await processIdentity(this.pid),
      helpers: await Promise.all(this.#helpers.map((h) => processIdentity(h.pid ?? 0))),
      root: this.root,
      name: this.name,
      cgroups: this.#cgroups,
    };
    await writeFile(join(this.#scratch, 'state.json'), JSON.stringify(state));
  }

  /** What nspawn printed (the container's console), for failure messages. */
  output(): string {
    return this.#output;
  }

  /** The host path of a path inside the container (symbolic links in it are not followed: see #writableHostPath). */
  hostPath(containerPath: string): string {
    return join(this.root, containerPath);
  }

  /**
   * The host path to write a container file at, refusing one that would land outside the root:
   * an absolute symbolic link in the container (/etc/resolv.conf, say) points into the HOST's
   * tree when the host follows it.
   */
  async #writableHostPath(containerPath: string): Promise<string> {
    const target = this.hostPath(containerPath);
    await mkdir(dirname(target), { recursive: true });
    const parent = await realpath(dirname(target));
    const link = await lstat(target).then(
      (s) => s.isSymbolicLink(),
      () => false,
    );
    const root = await realpath(this.root);
    if ((parent !== root && !parent.startsWith(`${root}/`)) || link) {
      throw new Error(`${containerPath} leads through a symbolic link; write it from inside the container (exec) instead`);
    }
    return target;
  }

  /** Copies a host file into the container (its parent directories made as needed). */
  async copyIn(hostFile: string, containerPath: string, mode?: number): Promise<void> {
    const target = await this.#writableHostPath(containerPath);
    await copyFile(hostFile, target);
    if (mode !== undefined) await chmod(target, mode);
  }

  /** Writes a file inside the container. */
  async writeFile(containerPath: string, content: string, mode = 0o644): Promise<void> {
    const target = await this.#writableHostPath(containerPath);
    await writeFile(target, content, { mode });
    await chmod(target, mode);
  }

  /** Runs a command inside the container: its files, its PID 1, its network. Never throws on a non-zero exit. */
  exec(argv: string[], options: CommandOptions = {}): Promise<CommandResult> {
    this.#mustBeUp();
    return runCommand('nsenter', ['-t', String(this.pid), '-a', '--', 'env', '-i', ...Object.entries(CONTAINER_ENV).map(([k, v]) => `${k}=${v}`), ...argv], {
      ...options,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
    });
  }

  /** Runs a HOST program in the container's network namespace only (its loopback, its 169.254.169.254). */
  execInNetwork(argv: string[], options: CommandOptions = {}): Promise<CommandResult> {
    this.#mustBeUp();
    return runCommand('nsenter', ['-t', String(this.pid), '-n', '--', ...argv], {
      ...options,
      env: options.env ?? { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
    });
  }

  /** Starts a long-running HOST program in the container's network (a fake STS, say); stop() ends it. */
  spawnInNetwork(argv: string[], env: Record<string, string> = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }): ChildProcess {
    this.#mustBeUp();
    const child = spawn('nsenter', ['-t', String(this.pid), '-n', '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
    this.#helpers.push(child);
    void this.#saveState().catch(() => undefined);
    return child;
  }

  #mustBeUp(): void {
    if (this.#stopped || !this.pid) throw new Error(`container ${this.name} is not running`);
  }

  /**
   * Powers the container off, kills whatever is left, unmounts and removes the scratch root and
   * the cgroups. Safe to call more than once and after a failed boot.
   */
  async stop(): Promise<{ poweredOff: boolean }> {
    if (this.#stopped) return { poweredOff: false };
    this.#stopped = true;
    process.removeListener('exit', this.#onExit);
    for (const helper of this.#helpers) await stopProcess(helper);
    let poweredOff = false;
    const nspawn = this.#nspawn;
    if (nspawn && nspawn.exitCode === null && nspawn.signalCode === null) {
      if (this.pid) {
        // --no-block: the call returns at once; nspawn exits when the container has shut down.
        await runCommand('nsenter', ['-t', String(this.pid), '-a', '--', 'systemctl', 'poweroff', '--no-block'], { timeoutMs: 15 * SECOND, env: {} }).catch(
          () => undefined,
        );
        poweredOff = await within(this.#nspawnExited, POWEROFF_TIMEOUT_MS);
      }
      if (!poweredOff) {
        // Killing the container's PID 1 kills its whole PID namespace; nspawn then exits.
        if (this.pid) signal(this.pid, 'SIGKILL');
        if (!(await within(this.#nspawnExited, KILL_TIMEOUT_MS))) {
          signal(nspawn.pid, 'SIGKILL');
          await within(this.#nspawnExited, KILL_TIMEOUT_MS);
        }
      }
    }
    if (this.#mounted) {
      try {
        await run('umount', [this.root]);
      } catch {
        await run('umount', ['--lazy', this.root]).catch(() => undefined);
      }
      this.#mounted = false;
    }
    await rm(this.#scratch, { recursive: true, force: true });
    for (const cgroup of this.#cgroups) await removeCgroup(cgroup);
    // nspawn leaves its (empty) propagation directory behind when /run is not a tmpfs.
    await rmdir(join('/run/systemd/nspawn/propagate', this.name)).catch(() => undefined);
    return { poweredOff };
  }

  /** Last resort when the test process exits without stop(): kill and unmount, synchronously. */
  #killSync(): void {
    for (const helper of this.#helpers) if (helper.pid) signal(-helper.pid, 'SIGKILL');
    if (this.pid) signal(this.pid, 'SIGKILL');
    if (this.#nspawn?.pid) signal(this.#nspawn.pid, 'SIGKILL');
    if (this.#mounted) spawnSync('umount', ['--lazy', this.root]);
  }
}

interface StaleState {
  ownerPid: number;
  /** The container's PID 1. */
  init: ProcessIdentity;
  /** Host programs started in the container's network, each the leader of its own process group. */
  helpers: ProcessIdentity[];
  root: string;
  name: string;
  cgroups: string[];
}

/**
 * Cleans up after a test process that died without stop() and without its exit handler (SIGKILL,
 * OOM): the container's PID namespace (only a process whose root is that scratch root), the
 * overlay mount, the scratch root and the cgroups.
 */
async function sweepStale(): Promise<void> {
  const entries = await readdir(tmpdir()).catch(() => [] as string[]);
  for (const entry of entries.filter((e) => e.startsWith('crosscred-nspawn-'))) {
    const scratch = join(tmpdir(), entry);
    const state = await readFile(join(scratch, 'state.json'), 'utf8').then(
      (text) => JSON.parse(text) as StaleState,
      () => undefined,
    );
    if (!state || isAlive(state.ownerPid)) continue;
    // Killing the container's PID 1 ends its PID namespace, and so everything inside.
    for (const helper of state.helpers ?? []) if (await isSameProcess(helper)) signal(-helper.pid, 'SIGKILL');
    if (state.init && (await isSameProcess(state.init))) {
      signal(state.init.pid, 'SIGKILL');
      for (let i = 0; i < 100 && (await isSameProcess(state.init)); i++) await pause(100);
    }
    if ((await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${state.root} `)) await run('umount', ['--lazy', state.root]).catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
    for (const cgroup of state.cgroups) await removeCgroup(cgroup);
    await rmdir(join('/run/systemd/nspawn/propagate', state.name)).catch(() => undefined);
  }
}

/** A PID and its start time: a PID reused since by another process does not match. */
interface ProcessIdentity {
  pid: number;
  start: string;
}

async function processIdentity(pid: number): Promise<ProcessIdentity> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // Field 22 (starttime); the fields after the command name's closing parenthesis start at 3.
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  return { pid, start };
}

async function isSameProcess(identity: ProcessIdentity): Promise<boolean> {
  if (!identity.pid || !identity.start) return false;
  return (await processIdentity(identity.pid)).start === identity.start;
}

function isAlive(pid: number): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The container's PID 1 under nspawn `nspawnPid`: a child whose innermost PID is 1 and that runs systemd; 0 until there is one. */
async function containerInit(nspawnPid: number): Promise<number> {
  const children = await readFile(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8').catch(() => '');
  for (const pid of children.split(/\s+/).filter(Boolean).map(Number)) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/);
    const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
    if (nspid && nspid.length > 1 && nspid.at(-1) === '1' && comm === 'systemd') return pid;
  }
  return 0;
}

async function isCgroup2(path: string): Promise<boolean> {
  const { stdout } = await run('stat', ['-f', '-c', '%T', path]).catch(() => ({ stdout: '' }));
  return stdout.trim() === 'cgroup2fs';
}

/** Removes a cgroup and the ones nspawn and systemd made under it, deepest first (all empty once the container is gone). */
async function removeCgroup(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) if (entry.isDirectory()) await removeCgroup(join(dir, entry.name));
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      await pause(100); // EBUSY while the last process is still being reaped
    }
  }
}

function runCommand(command: string, args: string[], options: CommandOptions & { env: Record<string, string> }): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      args,
      { env: options.env, timeout: options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; killed?: boolean }) | null;
        const code = !e ? 0 : typeof e.code === 'number' ? e.code : -1;
        const note = e?.killed ? `\n(killed after ${options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS} ms)` : e && code === -1 ? `\n(${e.message})` : '';
        resolve({ code, stdout, stderr: stderr + note });
      },
    );
    if (options.input !== undefined) child.stdin!.end(options.input);
    else child.stdin!.end();
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signal(-child.pid, 'SIGTERM');
  if (!(await within(exited, 5 * SECOND))) {
    signal(-child.pid, 'SIGKILL');
    await within(exited, KILL_TIMEOUT_MS);
  }
}

function signal(pid: number | undefined, sig: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const result = await Promise.race([promise.then(() => true), timeout]);
  clearTimeout(timer);
  return result;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `probe` until it returns a value other than undefined, with growing pauses, up to
 * `timeoutMs`; throws with `what` and the last probe's explanation otherwise.
 */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, explain?: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / SECOND} s${explain ? `\n${await explain()}` : ''}`);
    await pause(wait);
  }
}
