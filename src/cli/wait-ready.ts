import { parseArgs } from 'node:util';
import { request } from 'undici';
import { EXIT_USAGE } from './exit-codes.js';

/**
 * `crosscred wait-ready`: polls a running daemon's /readyz until it answers 200. As systemd's
 * ExecStartPost it holds the unit in "activating" until credentials are cached, so units ordered
 * After=crosscred.service start only when an SDK would get credentials.
 */
export async function runWaitReady(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { admin: { type: 'string' }, 'timeout-ms': { type: 'string' }, 'main-pid': { type: 'string' }, alive: { type: 'boolean' } },
    strict: true,
    allowPositionals: false,
  });
  const admin = values.admin ?? 'http://127.0.0.1:8171';
  const timeoutMs = Number(values['timeout-ms'] ?? 60_000);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100) {
    process.stderr.write('crosscred wait-ready: --timeout-ms must be a whole number of milliseconds, at least 100\n');
    return EXIT_USAGE;
  }
  const mainPid = values['main-pid'] === undefined ? undefined : Number(values['main-pid']);
  if (mainPid !== undefined && !(Number.isSafeInteger(mainPid) && mainPid > 1)) {
    process.stderr.write('crosscred wait-ready: --main-pid must be the process id of the daemon (systemd: $MAINPID)\n');
    return EXIT_USAGE;
  }
  // --alive: the process answers at all (/healthz), for a container runtime's health check, which
  // must not restart a daemon only because STS is away; otherwise credentials are cached (/readyz).
  const path = values.alive ? '/healthz' : '/readyz';
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    // A daemon that has exited will never be ready: say so now, not at the deadline (systemd keeps
    // the unit "activating" until this command ends).
    if (mainPid !== undefined && !isRunning(mainPid)) {
      process.stderr.write(`crosscred wait-ready: the daemon (pid ${mainPid}) exited before ${admin}${path} was ready (last: ${last})\n`);
      return 1;
    }
    try {
      const res = await request(`${admin.replace(/\/$/, '')}${path}`, { signal: AbortSignal.timeout(2_000) });
      const body = await res.body.text();
      if (res.statusCode === 200) return 0;
      last = `HTTP ${res.statusCode}: ${summarize(body)}`;
    } catch (err) {
      last = (err as { code?: string }).code ?? (err as Error).name;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  process.stderr.write(`crosscred wait-ready: ${admin}${path} was not ready within ${timeoutMs} ms (last: ${last})\n`);
  return 1;
}

/** The roles' last errors from a /readyz body, in one line. */
function summarize(body: string): string {
  try {
    const parsed = JSON.parse(body) as { roles?: Array<{ role: string; lastError: { code: string } | null }> };
    return (parsed.roles ?? [])
      .map((r) => `${r.role}: ${r.lastError?.code ?? 'waiting'}`)
      .join(', ')
      .slice(0, 300);
  } catch {
    return 'unreadable body';
  }
}

/** Whether a process with this id exists (EPERM: it does, as another user's). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
