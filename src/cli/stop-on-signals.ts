import type { Logger } from 'pino';

/** Bound on a graceful stop: in-flight requests get this long before the process exits anyway, in ms. */
export const SHUTDOWN_GRACE_MS = 5_000;

/**
 * The long-running commands' way to stop: on SIGTERM or SIGINT, close (listeners stop accepting,
 * in-flight requests finish) and exit 0, or exit anyway after SHUTDOWN_GRACE_MS. `what` names the
 * in-flight work in the log ("requests", "reviews", "token requests").
 *
 * `onHangup` handles SIGHUP. Without one, SIGHUP is logged and ignored: Node's default would end
 * the process, and an operator who sends it expects a reload, not an outage.
 */
export function stopOnSignals(logger: Logger, close: () => Promise<void>, what: string, onHangup?: () => void): { readonly stopping: () => boolean } {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, `stopping: closing listeners, letting in-flight ${what} finish`);
    const force = setTimeout(() => {
      logger.warn({ graceMs: SHUTDOWN_GRACE_MS }, `in-flight ${what} did not finish in time; exiting`);
      logger.flush();
      process.exit(0);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    void close().then(() => {
      logger.info('stopped');
      logger.flush();
      process.exitCode = 0;
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', onHangup ?? (() => logger.warn({ signal: 'SIGHUP' }, 'this command has no reload: SIGHUP ignored; restart it to change its settings')));
  return { stopping: () => stopping };
}
