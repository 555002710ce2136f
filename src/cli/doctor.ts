import { parseArgs } from 'node:util';
import { type Check, diagnoseRole, doctorExitCode, formatReport } from '../advice/doctor.js';
import type { ServeFlags } from '../config/load.js';
import { systemClock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { loadConfigForAdvice } from './role-config-for-advice.js';
import { SERVE_OPTIONS } from './serve-options.js';

const OPTIONS = {
  ...SERVE_OPTIONS,
  'no-exchange': { type: 'boolean' },
  'timeout-ms': { type: 'string' },
} as const;

const NODE_AGENT_OPTIONS = {
  'node-agent': { type: 'boolean' },
  audience: { type: 'string' },
  'allowed-issuer': { type: 'string', multiple: true },
  'timeout-ms': { type: 'string' },
} as const;

/** How long each step with the node agent may take by default, in ms (as an SDK would wait). */
const NODE_AGENT_TIMEOUT_MS = 2000;
/** How long an IMDS probe may take, in ms: the SDKs give IMDS 1 s. */
const IMDS_PROBE_TIMEOUT_MS = 1000;

/** `crosscred doctor`: exit 0 when the chain can work, 1 when it cannot. */
export async function runDoctor(args: string[]): Promise<number> {
  if (args.includes('--node-agent')) return runNodeAgentDoctor(args);
  const { values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false });
  const timeoutMs = parseTimeout(values['timeout-ms'], 5000);
  const preamble: Check[] = [];
  let loaded: ReturnType<typeof loadConfigForAdvice> | undefined;
  try {
    loaded = loadConfigForAdvice(values as ServeFlags);
  } catch (err) {
    if (!(err instanceof CrosscredError)) throw err;
    preamble.push({ status: 'fail', title: 'the configuration is not valid', detail: err.message, fix: err.hint });
    process.stdout.write(formatReport([], preamble));
    return 1;
  }
  const reports = [];
  for (const role of loaded.config.roles) {
    reports.push(
      await diagnoseRole(loaded.config, role, { clock: systemClock, exchange: !values['no-exchange'], timeoutMs, roleConfigured: loaded.roleConfigured }),
    );
  }
  process.stdout.write(formatReport(reports, preamble));
  return doctorExitCode(reports);
}

/** `crosscred doctor --node-agent`, run in a pod: exit 0 when it can get credentials from the node agent, 1 when not. */
async function runNodeAgentDoctor(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: NODE_AGENT_OPTIONS, strict: true, allowPositionals: false });
  const { diagnoseNodeAgent, formatNodeAgentReport, nodeAgentExitCode } = await import('../advice/node-agent-doctor.js');
  const { DEFAULT_AUDIENCE } = await import('../protocol/pod-identity.js');
  const report = await diagnoseNodeAgent({
    env: process.env,
    clock: systemClock,
    audience: values.audience ?? DEFAULT_AUDIENCE,
    allowedIssuers: values['allowed-issuer'] ?? [],
    agentTimeoutMs: parseTimeout(values['timeout-ms'], NODE_AGENT_TIMEOUT_MS),
    imdsTimeoutMs: IMDS_PROBE_TIMEOUT_MS,
  });
  process.stdout.write(formatNodeAgentReport(report));
  return nodeAgentExitCode(report);
}

function parseTimeout(text: string | undefined, fallback: number): number {
  const timeoutMs = Number(text ?? fallback);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 120_000) {
    throw new CrosscredError('CONFIG_INVALID', '--timeout-ms must be a whole number of milliseconds from 100 to 120000');
  }
  return timeoutMs;
}
