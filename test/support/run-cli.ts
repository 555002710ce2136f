import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CLI_ARGS, CLI_EXEC } from './chain.js';

const run = promisify(execFile);

/** Runs the built `crosscred` binary; resolves with exit code and output, never throws on a non-zero exit. */
export async function crosscred(args: string[], env: Record<string, string> = {}, timeout = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(CLI_EXEC, [...CLI_ARGS, ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, timeout });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
