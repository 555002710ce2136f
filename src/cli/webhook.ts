import { parseArgs } from 'node:util';
import { CrosscredError } from '../core/errors.js';
import { createLogger } from '../observability/logger.js';
import { EXIT_CONFIG } from './exit-codes.js';

/** Bound on a graceful stop: in-flight AdmissionReviews get this long before the process exits anyway, in ms. */
const SHUTDOWN_GRACE_MS = 5_000;

const OPTIONS = {
  listen: { type: 'string' },
  'admin-listen': { type: 'string' },
  'tls-cert-file': { type: 'string' },
  'tls-key-file': { type: 'string' },
  'default-mode': { type: 'string' },
  'sidecar-image': { type: 'string' },
  region: { type: 'string' },
  'ip-family': { type: 'string' },
  'kube-api-url': { type: 'string' },
  'kube-token-file': { type: 'string' },
  'kube-ca-file': { type: 'string' },
  'service-account-cache-seconds': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

/** `crosscred webhook`: the mutating admission webhook (issue 12). Runs until SIGTERM or SIGINT. */
export async function runWebhook(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false });
  const { resolveWebhookConfig } = await import('../webhook/webhook-config.js');
  const { startWebhook } = await import('../webhook/webhook-server.js');
  let config: ReturnType<typeof resolveWebhookConfig>;
  try {
    config = resolveWebhookConfig(values, process.env);
  } catch (err) {
    if (err instanceof CrosscredError) {
      process.stderr.write(`crosscred webhook: ${err.describe()}\n`);
      return EXIT_CONFIG;
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel });
  let webhook: Awaited<ReturnType<typeof startWebhook>>;
  try {
    webhook = await startWebhook(config, { logger });
  } catch (err) {
    logger.flush();
    if (err instanceof CrosscredError && err.code === 'CROSSCRED_ERR_CONFIG_INVALID') {
      process.stderr.write(`crosscred webhook: ${err.describe()}\n`);
      return EXIT_CONFIG;
    }
    throw err;
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: closing listeners, letting in-flight reviews finish');
    const force = setTimeout(() => {
      logger.warn({ graceMs: SHUTDOWN_GRACE_MS }, 'in-flight reviews did not finish in time; exiting');
      logger.flush();
      process.exit(0);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    void webhook.close().then(() => {
      logger.info('stopped');
      logger.flush();
      process.exitCode = 0;
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return -1;
}
