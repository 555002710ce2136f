import { parseArgs } from 'node:util';
import { loadConfig, type ServeFlags } from '../config/load.js';
import { startDaemon } from '../daemon.js';
import { createLogger } from '../observability/logger.js';
import { SERVE_OPTIONS } from './serve-options.js';

/** Bound on a graceful stop: in-flight requests get this long before the process exits anyway, in ms. */
const SHUTDOWN_GRACE_MS = 5_000;

/** `crosscred serve`. Resolves with -1 (keep running) once listening; exits on SIGTERM/SIGINT. */
export async function runServe(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: SERVE_OPTIONS, strict: true, allowPositionals: false });
  const config = loadConfig({ flags: values as ServeFlags, env: process.env });
  const logger = createLogger({ level: config.logLevel });
  const daemon = await startDaemon(config, { logger });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: closing listeners, letting in-flight requests finish');
    const force = setTimeout(() => {
      logger.warn({ graceMs: SHUTDOWN_GRACE_MS }, 'in-flight requests did not finish in time; exiting');
      logger.flush();
      process.exit(0);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    void daemon.close().then(() => {
      logger.info('stopped');
      logger.flush();
      process.exitCode = 0;
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Reloading configuration is not supported yet; do not let SIGHUP's default action kill the daemon.
  process.on('SIGHUP', () => logger.warn('SIGHUP ignored: configuration reload is not supported; restart to apply changes'));
  return -1;
}
