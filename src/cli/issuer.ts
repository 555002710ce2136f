import { parseArgs } from 'node:util';
import { LOG_LEVELS, type LogLevel } from '../config/config.js';
import { CrosscredError } from '../core/errors.js';
import { coreDumpWarning } from '../host/core-dumps.js';
import { createLogger } from '../observability/logger.js';
import { EXIT_CONFIG, EXIT_USAGE } from './exit-codes.js';
import { ISSUER_HELP } from './help.js';
import { stopOnSignals } from './stop-on-signals.js';

/** Errors that restarting cannot fix: exit 78 (the systemd unit does not restart on it). */
const CONFIGURATION_ERRORS: ReadonlySet<string> = new Set([
  'CROSSCRED_ERR_CONFIG_INVALID',
  'CROSSCRED_ERR_CONFIG_FILE_UNREADABLE',
  'CROSSCRED_ERR_ISSUER_KEY_INVALID',
  'CROSSCRED_ERR_ISSUER_ATTESTOR_UNAVAILABLE',
]);

/** `crosscred issuer serve|keygen|export-discovery|reset-instance`. */
export async function runIssuer(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case 'serve':
        return await serve(rest);
      case 'keygen':
        return await keygen(rest);
      case 'export-discovery':
        return await exportDiscovery(rest);
      case 'reset-instance':
        return await resetInstanceCommand(rest);
      default:
        process.stderr.write(
          `crosscred issuer: ${sub === undefined ? 'a subcommand is needed' : `unknown subcommand "${sub.slice(0, 40)}"`}\n\n${ISSUER_HELP}`,
        );
        return EXIT_USAGE;
    }
  } catch (err) {
    if (err instanceof CrosscredError && CONFIGURATION_ERRORS.has(err.code)) {
      process.stderr.write(`crosscred issuer ${sub}: ${err.describe()}\n`);
      return EXIT_CONFIG;
    }
    throw err;
  }
}

function configPath(value: string | undefined): string {
  const path = value ?? process.env['CROSSCRED_ISSUER_CONFIG'];
  if (!path) throw new CrosscredError('CONFIG_INVALID', '--config FILE (or env CROSSCRED_ISSUER_CONFIG) is required');
  return path;
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, 'log-level': { type: 'string' } }, strict: true, allowPositionals: false });
  const { loadIssuerConfig } = await import('../issuer/issuer-config.js');
  const { startIssuer } = await import('../issuer/issuer-server.js');
  const path = configPath(values.config);
  const level = values['log-level'];
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level))
    throw new CrosscredError('CONFIG_INVALID', `--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const config = loadIssuerConfig(path);
  const logger = createLogger({ level: (level as LogLevel | undefined) ?? config.logLevel });
  // Before the listeners open: a supervisor reading the log sees it ahead of "listening".
  const coreDumps = await coreDumpWarning();
  if (coreDumps) logger.warn({ code: 'CORE_DUMPS_ALLOWED' }, coreDumps);
  const issuer = await startIssuer(config, { logger });

  // SIGHUP re-reads the config file and applies keys, audiences, lifetime, policy, attestors and
  // the TLS certificate: how a key rotation step takes effect without a restart. A configuration
  // that does not validate is reported and the running one kept.
  let reloading: Promise<void> = Promise.resolve();
  const lifecycle = stopOnSignals(
    logger,
    () => issuer.close(),
    'token requests',
    () => {
      reloading = reloading.then(async () => {
        if (lifecycle.stopping()) return;
        logger.info({ signal: 'SIGHUP' }, 'reloading issuer configuration');
        try {
          const summary = await issuer.reload(loadIssuerConfig(path));
          if (summary.restartNeeded.length > 0) logger.warn({ settings: summary.restartNeeded }, 'changed settings need a restart to take effect');
          logger.info({ activeKid: summary.activeKid, publishedKids: summary.kids }, 'issuer configuration reloaded');
        } catch (err) {
          const reason = err instanceof CrosscredError ? err.describe() : String(err);
          logger.error({ errorCode: (err as CrosscredError).code }, `configuration reload refused, still running the previous one: ${reason}`);
        }
      });
    },
  );
  return -1;
}

async function keygen(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { alg: { type: 'string' }, out: { type: 'string' }, bits: { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const { DEFAULT_RSA_BITS, SIGNING_ALGORITHMS, generateKeyFile } = await import('../issuer/keys.js');
  const alg = values.alg ?? 'ES256';
  if (!(SIGNING_ALGORITHMS as readonly string[]).includes(alg)) throw new CrosscredError('CONFIG_INVALID', `--alg must be ${SIGNING_ALGORITHMS.join(' or ')}`);
  if (!values.out) throw new CrosscredError('CONFIG_INVALID', '--out FILE is required (it must not exist yet)');
  if (values.bits !== undefined && alg !== 'RS256') throw new CrosscredError('CONFIG_INVALID', '--bits applies to RS256 only');
  const bits = values.bits === undefined ? DEFAULT_RSA_BITS : Number(values.bits);
  const { kid } = await generateKeyFile(alg as (typeof SIGNING_ALGORITHMS)[number], values.out, bits);
  process.stdout.write(
    `wrote ${values.out} (${alg}, PKCS#8 PEM, mode 0600)\nkid: ${kid}\n\n` +
      `Add it to the issuer config's keys. The first key is active at once; a later one is published\n` +
      `first and made active only once AWS can have fetched the new JWKS (see docs/issuer.md, key rotation):\n` +
      `  - file: ${values.out}\n`,
  );
  return 0;
}

async function exportDiscovery(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, out: { type: 'string' } }, strict: true, allowPositionals: false });
  const { loadIssuerConfig } = await import('../issuer/issuer-config.js');
  const { loadKeySet } = await import('../issuer/keys.js');
  const { renderDiscovery, writeDiscovery } = await import('../issuer/discovery.js');
  if (!values.out) throw new CrosscredError('CONFIG_INVALID', '--out DIR is required');
  const config = loadIssuerConfig(configPath(values.config));
  const keys = await loadKeySet(config.keys);
  const written = await writeDiscovery(values.out, renderDiscovery({ issuerUrl: config.publicUrl, tokenEndpointUrl: config.tokenEndpointUrl, keys }));
  const prefix = new URL(config.publicUrl).pathname.replace(/^\/|\/$/g, '');
  process.stdout.write(
    `${written.map((p) => `wrote ${p}`).join('\n')}\n` +
      `kids: ${keys.published.map((k) => `${k.kid}${k.kid === keys.active.kid ? ' (active)' : ''}`).join(', ')}\n\n` +
      `Publish both so that ${config.publicUrl}/.well-known/openid-configuration serves them over HTTPS,\n` +
      `with Content-Type application/json, e.g. for S3:\n` +
      `  aws s3 cp ${values.out}/.well-known s3://BUCKET/${prefix ? `${prefix}/` : ''}.well-known --recursive --content-type application/json\n`,
  );
  return 0;
}

/** Exit code when the state store did not answer: a runtime failure, worth retrying. */
const EXIT_RUNTIME = 1;

async function resetInstanceCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string' }, kind: { type: 'string' }, account: { type: 'string' }, 'instance-id': { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const { loadIssuerConfig } = await import('../issuer/issuer-config.js');
  const { resetInstance } = await import('../issuer/first-use-admin.js');
  const config = loadIssuerConfig(configPath(values.config));
  const request = { kind: values.kind ?? '', account: values.account ?? '', instanceId: values['instance-id'] ?? '' };
  const verdict = await resetInstance(config, request);
  const what = `instance ${request.instanceId} of account ${request.account} (${request.kind})`;
  switch (verdict) {
    case 'reset':
      process.stdout.write(`reset the first-use binding of ${what}: its next accepted attestation binds the secret it presents\n`);
      return 0;
    case 'absent':
      process.stdout.write(`${what} had no first-use binding; nothing to reset\n`);
      return 0;
    case 'unavailable':
      process.stderr.write(`crosscred issuer reset-instance: the state store does not answer; nothing was reset (CROSSCRED_ERR_ISSUER_STATE_UNAVAILABLE)\n`);
      return EXIT_RUNTIME;
  }
}
