import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import ts from 'typescript';
import { REPO_ROOT } from '../../support/chain.js';
import { CLIENTS, clientAvailable } from '../../support/clients.js';

/**
 * A VM stand-in for the end-to-end chain: a network namespace whose loopback holds a cloud's
 * metadata address and 169.254.169.254, an optional /etc/hosts of its own (`ip netns exec` bind-
 * mounts /etc/netns/NAME/hosts over /etc/hosts), and the processes the test starts in it. Only
 * processes inside the namespace can reach those addresses, so every peer runs in there too.
 */
const run = promisify(execFile);

/** Bound on any one command run in the namespace, the AWS CLI included (ms). */
export const COMMAND_TIMEOUT_MS = 30_000;
/** Bound on a started process saying it is ready (ms). */
export const START_TIMEOUT_MS = 15_000;
/** A stopped process gets this long (ms) after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 3_000;
/** Kept small: the output is only read to explain a failure. */
const MAX_KEPT_OUTPUT_CHARS = 64 * 1024;

/**
 * Why the chain cannot run here, or undefined when it can. With CROSSCRED_E2E_STRICT=1 (CI, where
 * every tool is installed) a missing piece throws instead, so the test fails rather than skips.
 */
export async function vmChainUnavailable(): Promise<string | undefined> {
  const strict = process.env['CROSSCRED_E2E_STRICT'] === '1';
  const missing = (why: string): string => {
    if (strict) throw new Error(`${why}, and CROSSCRED_E2E_STRICT=1 requires the VM chain to run`);
    return why;
  };
  if (process.getuid?.() !== 0) return missing('not root: network namespaces and port 80 need root');
  try {
    await run('ip', ['netns', 'list'], { timeout: 10_000 });
  } catch (err) {
    return missing(`no usable "ip netns" here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  }
  if (!existsSync(join(REPO_ROOT, 'dist/cli/main.js'))) return missing('dist/ is not built (npm run build)');
  // Throws by itself under CROSSCRED_E2E_STRICT=1.
  if (!(await clientAvailable(CLIENTS.awsCliV2))) return `the AWS CLI v2 (${CLIENTS.awsCliV2}) is not installed: apt-get install awscli`;
  if (!(await clientAvailable('openssl', ['version']))) return 'openssl is not installed';
  return undefined;
}

/** A process started in the namespace. */
export interface NsProcess {
  readonly child: ChildProcess;
  readonly label: string;
  output(): string;
  /** Resolves with (and consumes) the first control line, `{"event":…}` on stdout, that satisfies `match`, within `timeoutMs`. */
  nextJson<T>(match: (value: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<T>;
  /** Writes one line to its stdin. */
  send(line: string): void;
  stop(): Promise<void>;
}

export class VmNamespace {
  readonly name: string;
  readonly #processes: NsProcess[] = [];
  #etcDir: string | undefined;
  #madeEtcNetns = false;

  private constructor(name: string) {
    this.name = name;
  }

  /**
   * A fresh namespace with `addresses` (each /32) on its loopback, and `hosts` as its /etc/hosts
   * when given. On any failure what was made is removed before the error is thrown.
   */
  static async create(name: string, options: { addresses: readonly string[]; hosts?: string }): Promise<VmNamespace> {
    await run('ip', ['netns', 'add', name]);
    const ns = new VmNamespace(name);
    try {
      await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      for (const address of options.addresses) await run('ip', ['-n', name, 'addr', 'add', `${address}/32`, 'dev', 'lo']);
      if (options.hosts !== undefined) {
        ns.#madeEtcNetns = !existsSync('/etc/netns');
        ns.#etcDir = join('/etc/netns', name);
        await mkdir(ns.#etcDir, { recursive: true, mode: 0o755 });
        await writeFile(join(ns.#etcDir, 'hosts'), options.hosts, { mode: 0o644 });
      }
      return ns;
    } catch (err) {
      await ns.close();
      throw err;
    }
  }

  /** Runs `command` in the namespace to completion; rejects with its output on failure or timeout. */
  async run(command: string, args: readonly string[], env: Record<string, string>): Promise<string> {
    try {
      const { stdout } = await run('ip', ['netns', 'exec', this.name, command, ...args], {
        env,
        timeout: COMMAND_TIMEOUT_MS,
        maxBuffer: 1 << 20,
        killSignal: 'SIGKILL',
      });
      return stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`in ${this.name}: ${command} ${args.join(' ')} failed: ${e.message}\nstdout: ${e.stdout ?? ''}\nstderr: ${e.stderr ?? ''}`);
    }
  }

  /**
   * Starts `command` in the namespace (stdin a pipe, so a helper can be asked for a report and
   * notices when the test goes away) and resolves once its output matches `ready`.
   */
  async start(label: string, command: string, args: readonly string[], env: Record<string, string>, ready: RegExp): Promise<NsProcess> {
    const child = spawn('ip', ['netns', 'exec', this.name, command, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let output = '';
    const keep = (chunk: string) => {
      output = (output + chunk).slice(-MAX_KEPT_OUTPUT_CHARS);
    };
    const jsonLines: Record<string, unknown>[] = [];
    const waiters = new Set<() => void>();
    createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(`${line}\n`);
      if (line.startsWith('{')) {
        try {
          // Only the helpers' control lines ({"event":…}); log lines are kept as text only.
          const value = JSON.parse(line) as Record<string, unknown>;
          if (typeof value['event'] === 'string') jsonLines.push(value);
        } catch {
          // A log line that happens to start with "{" but is cut: ignored.
        }
      }
      for (const wake of waiters) wake();
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      keep(chunk);
      for (const wake of waiters) wake();
    });
    child.stdin!.on('error', () => undefined);
    let exited: string | undefined;
    child.once('exit', (code, signal) => {
      exited = `exited (${signal ?? code})`;
      for (const wake of waiters) wake();
    });

    const waitFor = <T>(test: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const check = () => {
          const found = test();
          if (found !== undefined) return finish(() => resolve(found));
          if (exited) return finish(() => reject(new Error(`${label} ${exited} before ${what}:\n${output}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`${label}: no ${what} within ${timeoutMs} ms:\n${output}`))), timeoutMs);
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        waiters.add(check);
        check();
      });

    const processHandle: NsProcess = {
      child,
      label,
      output: () => output,
      nextJson: <T>(match: (value: Record<string, unknown>) => boolean, timeoutMs = START_TIMEOUT_MS) =>
        waitFor(
          () => {
            const index = jsonLines.findIndex(match);
            return index < 0 ? undefined : (jsonLines.splice(index, 1)[0] as T);
          },
          'expected answer',
          timeoutMs,
        ),
      send: (line) => void child.stdin!.write(`${line}\n`),
      stop: () => stopChild(child),
    };
    this.#processes.push(processHandle);
    await waitFor(() => (ready.test(output) ? true : undefined), `line matching ${ready}`, START_TIMEOUT_MS);
    return processHandle;
  }

  /** Stops every process started here, deletes the namespace and its /etc/netns directory. */
  async close(): Promise<void> {
    await Promise.all(this.#processes.map((p) => p.stop()));
    await run('ip', ['netns', 'del', this.name]).catch(() => undefined);
    if (this.#etcDir) await rm(this.#etcDir, { recursive: true, force: true });
    // Only if this namespace made it and no other one uses it now.
    if (this.#madeEtcNetns) await rmdir('/etc/netns').catch(() => undefined);
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const kill = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** The environment of every process in the VM: nothing inherited but PATH, and no AWS_* at all. */
export function vmEnv(home: string): Record<string, string> {
  return {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: home,
    AWS_CONFIG_FILE: join(home, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-aws-credentials'),
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
}

/**
 * The fake clouds (test/support/fake-*-cloud.ts) as plain ES modules that `node` runs inside the
 * namespace: Node 20 cannot run TypeScript, so they are transpiled (types stripped, nothing else)
 * into `dir/fakes/*.mjs`, with `dir/node_modules` linked to the repository's so their own imports
 * (@alicloud/openapi-core) resolve.
 */
export async function transpileFakes(dir: string): Promise<string> {
  const out = join(dir, 'fakes');
  await mkdir(out, { recursive: true });
  await symlink(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  for (const name of ['fake-alibaba-cloud', 'fake-tencent-cloud']) {
    const source = await readFile(join(REPO_ROOT, 'test/support', `${name}.ts`), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      fileName: `${name}.ts`,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    });
    // Only these two files are transpiled: an import of another of ours would not resolve.
    if (/\bfrom\s+['"]\.{1,2}\//.test(outputText))
      throw new Error(`test/support/${name}.ts now imports a relative module; transpile that too in ${import.meta.url}`);
    await writeFile(join(out, `${name}.mjs`), outputText);
  }
  return out;
}

/**
 * A test CA and a serving certificate for `dnsName` issued by it (openssl), for a TLS front that
 * answers as an official cloud host inside the namespace.
 */
export async function makeServingCertificate(dir: string, dnsName: string): Promise<{ caPath: string; certPath: string; keyPath: string }> {
  const p = (file: string) => join(dir, file);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=crosscred vm-chain test CA', '-keyout', p('tls-ca.key'), '-out', p('tls-ca.pem')]);
  await run('openssl', ['req', '-new', ...ec, '-subj', `/CN=${dnsName}`, '-keyout', p('tls.key'), '-out', p('tls.csr')]);
  await writeFile(p('tls.ext'), `subjectAltName=DNS:${dnsName}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    p('tls.csr'),
    '-CA',
    p('tls-ca.pem'),
    '-CAkey',
    p('tls-ca.key'),
    '-set_serial',
    '1',
    '-days',
    '1',
    '-extfile',
    p('tls.ext'),
    '-out',
    p('tls.pem'),
  ]);
  return { caPath: p('tls-ca.pem'), certPath: p('tls.pem'), keyPath: p('tls.key') };
}

/** A private scratch directory (mode 0700); the caller removes it. */
export function scratchDir(tag: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `crosscred-vm-chain-${tag}-`));
}
