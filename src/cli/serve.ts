import { parseArgs } from 'node:util';
import type { Config } from '../config/config.js';
import { loadConfig, type ServeFlags } from '../config/load.js';
import { CrosscredError, isCrosscredError } from '../core/errors.js';
import { coreDumpWarning } from '../host/core-dumps.js';
import { createLogger } from '../observability/logger.js';
import { startDaemon } from '../serve/daemon.js';
import { SERVE_OPTIONS } from './serve-options.js';
import { stopOnSignals } from './stop-on-signals.js';

/** `crosscred serve`. Resolves with -1 (keep running) once listening; exits on SIGTERM/SIGINT. */
export async function runServe(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: SERVE_OPTIONS, strict: true, allowPositionals: false });
  const config = loadServeConfig(values as ServeFlags);
  const logger = createLogger({ level: config.logLevel });
  // Before the listeners open: a supervisor reading the log sees it ahead of "listening".
  const coreDumps = await coreDumpWarning();
  if (coreDumps) logger.warn({ code: 'CORE_DUMPS_ALLOWED' }, coreDumps);
  const daemon = await startDaemon(config, { logger });

  // SIGHUP re-reads the configuration (the same flags, the config file, the environment the
  // process started with) and applies it without dropping cached credentials. Reloads run one at
  // a time; a configuration that does not validate is reported and the running one kept.
  let reloading: Promise<void> = Promise.resolve();
  const lifecycle = stopOnSignals(
    logger,
    () => daemon.close(),
    'requests',
    () => {
      reloading = reloading.then(async () => {
        if (lifecycle.stopping()) return;
        logger.info({ signal: 'SIGHUP' }, 'reloading configuration');
        let next: Config;
        try {
          next = loadConfig({ flags: values as ServeFlags, env: process.env });
        } catch (err) {
          const reason = err instanceof CrosscredError ? err.describe() : String(err);
          logger.error({ errorCode: (err as CrosscredError).code }, `configuration reload refused, still running the previous one: ${reason}`);
          return;
        }
        const summary = await daemon.reload(next);
        if (summary.restartNeeded.length > 0)
          logger.warn({ settings: summary.restartNeeded }, 'changed settings need a restart to take effect: they belong to open sockets');
        if (summary.keptPrevious.length > 0)
          logger.warn({ roles: summary.keptPrevious }, 'changed roles got no credentials with their new settings: the previous settings keep serving');
        logger.info({ ...summary }, 'configuration reloaded');
      });
    },
  );
  return -1;
}

/** The simple way first: most first runs of `serve` without a role want exactly one. */
const NO_ROLE = `no role to assume. For one role:
    crosscred serve --role-arn arn:aws:iam::<account>:role/<name> --token-file <file holding the OIDC JWT>
    (or set AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, as an EKS pod has them).
  For several roles: --config FILE, with roles: and listen: ADDRESS=ROLE in it.
  To see it work first, with no AWS account: crosscred demo. Every option: crosscred serve --help`;

/**
 * loadConfig, with a newcomer's first mistake (no role given anywhere) explained up front. Without
 * a role, loadConfig also says the default listener serves no role and suggests the several-roles
 * syntax; that line is a consequence and is dropped. Any other problem is still listed.
 */
function loadServeConfig(flags: ServeFlags) {
  try {
    return loadConfig({ flags, env: process.env });
  } catch (err) {
    const noRoleGiven = !flags['role-arn'] && !flags.config && !process.env['AWS_ROLE_ARN'] && !process.env['CROSSCRED_CONFIG'];
    if (!noRoleGiven || !isCrosscredError(err, 'CONFIG_INVALID')) throw err;
    const others = err.message
      .split('\n')
      .filter((line) => line.startsWith('  - '))
      .map((line) => line.slice(4))
      .filter((problem) => !problem.startsWith('roleArn (') && !problem.includes('serves no role'));
    // Ends with a line break, so that the code's hint, which describe() appends, has a line of its own.
    throw new CrosscredError('CONFIG_INVALID', `${NO_ROLE}${others.length > 0 ? `\n  Also:\n  - ${others.join('\n  - ')}` : ''}\n `);
  }
}
