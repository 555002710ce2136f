import { parseArgs } from 'node:util';
import { CrosscredError } from '../core/errors.js';
import { coreDumpWarning } from '../host/core-dumps.js';
import { createLogger } from '../observability/logger.js';
import { EXIT_CONFIG } from './exit-codes.js';
import { stopOnSignals } from './stop-on-signals.js';

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
  // Before the listeners open: a supervisor reading the log sees it ahead of "listening".
  const coreDumps = await coreDumpWarning();
  if (coreDumps) logger.warn({ code: 'CORE_DUMPS_ALLOWED' }, coreDumps);
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

  stopOnSignals(logger, () => webhook.close(), 'reviews');
  return -1;
}
