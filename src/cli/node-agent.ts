import { type ParseArgsConfig, parseArgs } from 'node:util';
import { CrosscredError } from '../core/errors.js';
import { coreDumpWarning } from '../host/core-dumps.js';
import { dropPrivileges, parseRunAs, type RunAs } from '../host/privileges.js';
import { startNodeAgent } from '../node-agent/agent.js';
import { type NodeAgentFlags, resolveNodeAgentConfig } from '../node-agent/config.js';
import { createLogger } from '../observability/logger.js';
import { stopOnSignals } from './stop-on-signals.js';

/** The options of `crosscred node-agent`; help text in help.ts (NODE_AGENT_HELP). */
export const NODE_AGENT_OPTIONS = {
  listen: { type: 'string', multiple: true },
  'admin-listen': { type: 'string' },
  'allowed-issuer': { type: 'string', multiple: true },
  audience: { type: 'string' },
  'allow-unbound-tokens': { type: 'boolean' },
  'session-name-template': { type: 'string' },
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
  'run-as': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** `crosscred node-agent`. Resolves with -1 (keep running) once listening; exits on SIGTERM/SIGINT. */
export async function runNodeAgent(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: NODE_AGENT_OPTIONS, strict: true, allowPositionals: false });
  const config = resolveNodeAgentConfig(values as NodeAgentFlags, process.env);
  const runAs = runAsFlag(values['run-as']);
  const logger = createLogger({ level: config.logLevel });
  const coreDumps = await coreDumpWarning();
  if (coreDumps) logger.warn({ code: 'CORE_DUMPS_ALLOWED' }, coreDumps);
  const agent = await startNodeAgent(config, { logger, holdRequests: runAs !== undefined });
  if (runAs) {
    // The listeners hold their sockets; from here on nothing needs root, and nothing keeps it.
    try {
      dropPrivileges(runAs);
    } catch (err) {
      await agent.close();
      throw err;
    }
    logger.info({ uid: runAs.uid, gid: runAs.gid }, 'listening; now running as an unprivileged user');
    // Only now: no pod's request is ever answered by this process as root.
    agent.accept();
  }

  stopOnSignals(logger, () => agent.close(), 'requests');
  return -1;
}

/** `--run-as UID:GID`: the user to switch to once the listeners are bound (see host/privileges.ts). */
function runAsFlag(text: string | undefined): RunAs | undefined {
  if (text === undefined) return undefined;
  const parsed = parseRunAs(text);
  if ('problem' in parsed)
    throw new CrosscredError('CONFIG_INVALID', `the node agent's settings have 1 problem(s):\n  - --run-as: "${text.slice(0, 40)}" ${parsed.problem}`);
  return parsed;
}
