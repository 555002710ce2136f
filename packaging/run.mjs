import { execFileSync } from 'node:child_process';

/** Runs a build tool; its output goes to stderr so that a failing step shows why. */
export function run(command, args, options = {}) {
  try {
    return execFileSync(command, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 1024 * 1024, ...options });
  } catch (err) {
    if (err.code === 'ENOENT') throw new Error(`${command} is not installed (packaging needs it; see docs/packaging.md)`);
    throw new Error(`${command} ${args.join(' ')} failed (${err.status ?? err.signal ?? err.message})`);
  }
}
