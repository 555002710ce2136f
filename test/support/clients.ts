import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The real AWS clients that the end-to-end tests drive. */
export const CLIENTS = {
  /** AWS CLI v2 from Debian's awscli package (the pyenv `aws` on PATH is v1). */
  awsCliV2: '/usr/bin/aws',
  /** AWS CLI v1 with botocore 1.4x, from the machine image's pyenv. */
  awsCliV1: 'aws',
  /** pyenv Python with botocore 1.4x. */
  pyenvPython: 'python3',
  /** Debian's Python with botocore 1.29 (python3-botocore). */
  debianPython: '/usr/bin/python3',
  motoServer: 'moto_server',
} as const;

/**
 * Whether a client can run here. `.ci/run` installs every client and sets CROSSCRED_E2E_STRICT=1,
 * so in CI a missing client fails the run instead of skipping silently.
 */
export async function clientAvailable(command: string, probeArgs: string[] = ['--version']): Promise<boolean> {
  if (command.startsWith('/') && !existsSync(command)) return strictOrFalse(command);
  try {
    await run(command, probeArgs, { timeout: 20_000 });
    return true;
  } catch {
    return strictOrFalse(command);
  }
}

function strictOrFalse(command: string): false {
  if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(`${command} is not runnable here, and CROSSCRED_E2E_STRICT=1 requires every client`);
  return false;
}

/** A clean environment for a client: no credentials, no config files, nothing inherited but PATH. */
export function clientEnv(home: string, extra: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: home,
    AWS_CONFIG_FILE: `${home}/no-aws-config`,
    AWS_SHARED_CREDENTIALS_FILE: `${home}/no-aws-credentials`,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    // Several pyenv shims need these to find their interpreter.
    ...(process.env['PYENV_ROOT'] ? { PYENV_ROOT: process.env['PYENV_ROOT'] } : {}),
    ...extra,
  };
}

export async function runClient(command: string, args: string[], env: Record<string, string>): Promise<string> {
  try {
    const { stdout } = await run(command, args, { env, timeout: 60_000, maxBuffer: 1 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${e.message}\nstdout: ${e.stdout ?? ''}\nstderr: ${e.stderr ?? ''}`);
  }
}

/** Where Debian's golang-github-aws-aws-sdk-go(-v2)-dev put the Go SDK sources (GOPATH mode). */
const GO_PATH = '/usr/share/gocode';

/** Whether the Go toolchain and Debian's Go SDK sources are here (strict: throws when not). */
export async function goClientsAvailable(): Promise<boolean> {
  return (await clientAvailable('go', ['version'])) && (await clientAvailable('test', ['-d', `${GO_PATH}/src/github.com/aws/aws-sdk-go-v2/config`]));
}

/**
 * Builds test/e2e/clients/go-sdk-v1 and -v2 offline into binDir as go-sdk-v1 and go-sdk-v2. Each
 * asks the unmodified SDK's default chain for credentials and prints the provider and access key.
 */
export async function buildGoClients(repoRoot: string, binDir: string): Promise<void> {
  const env = { ...process.env, GO111MODULE: 'off', GOPATH: GO_PATH, GOPROXY: 'off', GOCACHE: join(binDir, 'cache'), GOFLAGS: '' };
  for (const v of ['v1', 'v2']) {
    await run('go', ['build', '-o', join(binDir, `go-sdk-${v}`), join(repoRoot, `test/e2e/clients/go-sdk-${v}/main.go`)], { env, timeout: 180_000 });
  }
}
