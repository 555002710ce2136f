import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { inspectJwt, STS_MAX_TOKEN_LENGTH } from './jwt-shape.js';
import { redactSecrets } from './redact-secrets.js';
import type { TokenClaimsSummary, TokenSource, WebIdentityToken } from './token-source.js';

/** Output read at most: a token STS accepts in a JSON envelope, with room. More is not a token. */
const MAX_STDOUT_BYTES = STS_MAX_TOKEN_LENGTH + 4096;
/** stderr kept for the debug log, in bytes; the rest is read and dropped. */
const MAX_STDERR_BYTES = 2048;
/** stderr shown in one debug line at most, in characters (after masking). */
const MAX_SHOWN_STDERR_CHARS = 500;
/** What an error says instead of quoting stderr, which may hold a vendor CLI's secrets. */
const STDERR_NOTE = '; its stderr is logged at debug level (--log-level debug), with secrets masked';

/** What every command gets: where programs are, and where a CLI keeps its profile and cache. */
const BASE_ENV_NAMES = ['PATH', 'HOME'] as const;

export interface ExecTokenSourceOptions {
  /**
   * Names of variables passed from `parentEnv` beyond PATH and HOME (--token-command-env). The
   * command never gets the daemon's whole environment: it may hold a proxy password, or a
   * credential meant for crosscred alone.
   */
  readonly passEnv?: readonly string[];
  /** Where the passed values are read when the command starts; default process.env. */
  readonly parentEnv?: Readonly<Record<string, string | undefined>>;
  /**
   * Receives the command's stderr, masked (redactSecrets) and on one line, after each run that
   * wrote any. The daemon logs it at debug level. It never goes into an error message: errors
   * reach /readyz, warn-level logs and doctor's output.
   */
  readonly onStderr?: (masked: string) => void;
}

/**
 * A program that prints the token: a vendor CLI, a script that asks a local agent. It runs with
 * an argument vector and no shell, within a time limit and an output limit, on every exchange.
 * It prints either the compact JWT, or JSON `{"token": "...", "expiration": "<ISO 8601> | <epoch s>"}`.
 */
export class ExecTokenSource implements TokenSource {
  readonly description: string;
  readonly #name: string;

  constructor(
    private readonly argv: readonly string[],
    private readonly timeoutMs: number,
    private readonly clock: Clock,
    private readonly options: ExecTokenSourceOptions = {},
  ) {
    this.#name = basename(argv[0] ?? '');
    this.description = `token command ${argv[0] ?? ''}`;
  }

  async getToken(): Promise<WebIdentityToken> {
    const { stdout, stderr } = await this.#run();
    let token = stdout.trim();
    let declaredExpiry: number | undefined;
    if (token.startsWith('{')) {
      ({ token, declaredExpiry } = this.#parseEnvelope(token, stderr));
    }
    let claims: TokenClaimsSummary;
    try {
      claims = inspectJwt(token, this.clock.wallNow(), this.description);
    } catch (err) {
      // Output that is not a usable token: say so with the command's name, and where its stderr went.
      const what = err instanceof CrosscredError ? err.message.replace(this.description, 'its output') : 'its output is not a JWT';
      throw this.#fail(`printed no usable token (${what})${stderr ? STDERR_NOTE : ''}`);
    }
    const jwtExpiry = claims.exp * 1000;
    // The token is good until the earlier of what the program says and what the JWT says.
    return { token, expiresAtWall: declaredExpiry !== undefined ? Math.min(declaredExpiry, jwtExpiry) : jwtExpiry, claims };
  }

  #parseEnvelope(text: string, stderr: boolean): { token: string; declaredExpiry: number | undefined } {
    const withStderr = (what: string) => this.#fail(`${what}${stderr ? STDERR_NOTE : ''}`);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw withStderr('printed something that starts like JSON but is not JSON');
    }
    const envelope = (data ?? {}) as { token?: unknown; expiration?: unknown };
    if (typeof envelope.token !== 'string') throw withStderr('printed JSON without a string "token" field');
    const exp = envelope.expiration;
    let declaredExpiry: number | undefined;
    if (typeof exp === 'number' && Number.isFinite(exp)) declaredExpiry = exp * 1000;
    else if (typeof exp === 'string' && Number.isFinite(Date.parse(exp))) declaredExpiry = Date.parse(exp);
    else if (exp !== undefined && exp !== null) throw withStderr('printed an "expiration" that is neither an ISO 8601 time nor epoch seconds');
    return { token: envelope.token.trim(), declaredExpiry };
  }

  /**
   * Runs the command in its own process group, so a time-out or an output flood kills everything
   * it started (a script's `sleep`, a CLI's helpers), and settles as soon as that happens rather
   * than when the last grandchild lets go of the pipes.
   */
  #run(): Promise<{ stdout: string; stderr: boolean }> {
    return new Promise((resolve, reject) => {
      const env = commandEnv(this.options.parentEnv ?? process.env, this.options.passEnv ?? []);
      const child = spawn(this.argv[0]!, this.argv.slice(1), { shell: false, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outBytes = 0;
      let errBytes = 0;
      let settled = false;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(timer);
        this.#reportStderr(err);
        outcome();
      };
      const stop = (reason: CrosscredError) => {
        killGroup(child.pid);
        child.stdout.destroy();
        child.stderr.destroy();
        settle(() => reject(reason));
      };
      const timer = this.clock.setTimeout(() => stop(this.#fail(`did not finish within ${this.timeoutMs} ms`)), this.timeoutMs);
      child.stdout.on('data', (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes > MAX_STDOUT_BYTES) stop(this.#fail(`printed more than ${MAX_STDOUT_BYTES} bytes`));
        else out.push(chunk);
      });
      child.stderr.on('data', (chunk: Buffer) => {
        if (errBytes < MAX_STDERR_BYTES) err.push(chunk.subarray(0, MAX_STDERR_BYTES - errBytes));
        errBytes += chunk.length;
      });
      child.once('error', (e: NodeJS.ErrnoException) => settle(() => reject(this.#fail(`could not be started (${e.code ?? e.message})`))));
      child.once('close', (code, signal) => {
        const stderr = errBytes > 0;
        if (code !== 0) {
          settle(() => reject(this.#fail(`exited with ${code === null ? `signal ${signal}` : `code ${code}`}${stderr ? STDERR_NOTE : ''}`)));
        } else {
          settle(() => resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr }));
        }
      });
      // Anything the command left running once it exited is not waited for.
      child.once('exit', () => killGroup(child.pid));
    });
  }

  /** Hands what the command wrote on stderr, masked, to the debug sink; never to a message. */
  #reportStderr(chunks: readonly Buffer[]): void {
    if (this.options.onStderr === undefined || chunks.length === 0) return;
    const shown = shownStderr(Buffer.concat(chunks).toString('utf8'));
    if (shown !== '') this.options.onStderr(shown);
  }

  #fail(what: string): CrosscredError {
    return new CrosscredError('TOKEN_COMMAND_FAILED', `token command ${this.#name} ${what}`);
  }
}

/** PATH, HOME and the named variables, as set in `parent` when the command starts; nothing else. */
export function commandEnv(parent: Readonly<Record<string, string | undefined>>, passEnv: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...BASE_ENV_NAMES, ...passEnv]) {
    const value = parent[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** SIGKILL to the command's whole process group (it leads its own: spawned detached). */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/**
 * stderr as one readable line: control characters become spaces, secret-shaped text is masked,
 * bounded. Masked before it is cut, so a cut never leaves the unmasked start of a secret.
 */
function shownStderr(text: string): string {
  return redactSecrets(text.replace(/[\u0000-\u001f\u007f]+/g, ' '))
    .trim()
    .slice(0, MAX_SHOWN_STDERR_CHARS);
}
