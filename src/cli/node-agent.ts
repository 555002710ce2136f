import { type ParseArgsConfig, parseArgs } from 'node:util';
import { coreDumpWarning } from '../host/core-dumps.js';
import { startNodeAgent } from '../node-agent/agent.js';
import { type NodeAgentFlags, resolveNodeAgentConfig } from '../node-agent/config.js';
import { createLogger } from '../observability/logger.js';

/** Bound on a graceful stop, as for serve: in-flight requests get this long, in ms. */
const SHUTDOWN_GRACE_MS = 5_000;

/** The options of `crosscred node-agent`; help text in help.ts (NODE_AGENT_HELP). */
export const NODE_AGENT_OPTIONS = {
  listen: { type: 'string', multiple: true },
  'admin-listen': { type: 'string' },
  'allowed-issuer': { type: 'string', multiple: true },
  audience: { type: 'string' },
  'allow-unbound-tokens': { type: 'boolean' },
  'allowed-role': { type: 'string', multiple: true },
  region: { type: 'string' },
  'sts-endpoint': { type: 'string' },
  'ca-bundle': { type: 'string' },
  'sts-connect-timeout-ms': { type: 'string' },
  'sts-timeout-ms': { type: 'string' },
  'duration-seconds': { type: 'string' },
  'max-entries': { type: 'string' },
  'max-cache-bytes': { type: 'string' },
  'idle-seconds': { type: 'string' },
  'rate-per-second': { type: 'string' },
  'rate-burst': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** `crosscred node-agent`. Resolves with -1 (keep running) once listening; exits on SIGTERM/SIGINT. */
export async function runNodeAgent(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: NODE_AGENT_OPTIONS, strict: true, allowPositionals: false });
  const config = resolveNodeAgentConfig(values as NodeAgentFlags, process.env);
  const logger = createLogger({ level: config.logLevel });
  const coreDumps = await coreDumpWarning();
  if (coreDumps) logger.warn({ code: 'CORE_DUMPS_ALLOWED' }, coreDumps);
  const agent = await startNodeAgent(config, { logger });

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
    void agent.close().then(() => {
      logger.info('stopped');
      logger.flush();
      process.exitCode = 0;
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return -1;
}
