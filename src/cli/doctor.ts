import { parseArgs } from 'node:util';
import { type Check, diagnoseRole, formatReport } from '../advice/doctor.js';
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

/** `crosscred doctor`: exit 0 when the chain can work, 1 when it cannot. */
export async function runDoctor(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false });
  const timeoutMs = Number(values['timeout-ms'] ?? 5000);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 120_000) {
    throw new CrosscredError('CONFIG_INVALID', '--timeout-ms must be a whole number of milliseconds from 100 to 120000');
  }
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
  return reports.some((r) => r.checks.some((c) => c.status === 'fail')) ? 1 : 0;
}
