// What a benchmark report says of the machine it ran on (bench/run.mjs and the issuer scenarios).
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

export function machine() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  return {
    nproc: cpus().length,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown',
    node: process.version,
    kernel: existsSync('/proc/sys/kernel/osrelease') ? readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim() : 'unknown',
    /** The 1-minute load average when the run started: other work on a shared machine shows here. */
    loadAverageAtStart: +loadavg()[0].toFixed(2),
  };
}
