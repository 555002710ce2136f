#!/usr/bin/env -S node --max-semi-space-size=2
// The V8 flag caps the young generation at 2 MB per semi-space (default 16 MB): the daemon
// allocates little per request, and the benchmark measured the default's growth under load at
// about 30 MB of resident memory for no throughput gain. The Dockerfile passes the same flag.
import { CrosscredError } from '../core/errors.js';
import { EXIT_CONFIG, EXIT_USAGE } from './exit-codes.js';
import {
  CREDENTIAL_PROCESS_HELP,
  DEMO_HELP,
  DOCTOR_HELP,
  ISSUER_HELP,
  MAIN_HELP,
  NET_SETUP_HELP,
  NODE_AGENT_HELP,
  SERVE_HELP,
  TRUST_POLICY_HELP,
  WAIT_READY_HELP,
} from './help.js';
import { crosscredVersion } from './version.js';

// The AWS SDK warns on every start that its releases after January 2027 need Node 22. crosscred
// pins an exact SDK version that supports Node 20 (see package.json), so the warning would only
// alarm operators; the pin and its reason are documented in the README (Versions).
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

type Run = (args: string[]) => Promise<number>;

/**
 * Each command's module is loaded only when that command runs: the daemon's memory then holds
 * only what `serve` needs (the demo's issuer and emulator, doctor's JOSE checks and their
 * libraries stay out of it).
 */
const COMMANDS: Record<string, { help: string; load: () => Promise<Run> }> = {
  serve: { help: SERVE_HELP, load: async () => (await import('./serve.js')).runServe },
  'credential-process': { help: CREDENTIAL_PROCESS_HELP, load: async () => (await import('./credential-process.js')).runCredentialProcess },
  demo: { help: DEMO_HELP, load: async () => (await import('./demo.js')).runDemo },
  doctor: { help: DOCTOR_HELP, load: async () => (await import('./doctor.js')).runDoctor },
  'trust-policy': { help: TRUST_POLICY_HELP, load: async () => (await import('./trust-policy.js')).runTrustPolicy },
  'net-setup': { help: NET_SETUP_HELP, load: async () => (await import('./net-setup.js')).runNetSetup },
  'wait-ready': { help: WAIT_READY_HELP, load: async () => (await import('./wait-ready.js')).runWaitReady },
  issuer: { help: ISSUER_HELP, load: async () => (await import('./issuer.js')).runIssuer },
  'node-agent': { help: NODE_AGENT_HELP, load: async () => (await import('./node-agent.js')).runNodeAgent },
};

/** Errors that restarting cannot fix: exit 78, which the systemd unit does not restart. */
const CONFIGURATION_ERRORS: ReadonlySet<string> = new Set([
  'CROSSCRED_ERR_CONFIG_INVALID',
  'CROSSCRED_ERR_CONFIG_FILE_UNREADABLE',
  'CROSSCRED_ERR_AUTH_TOKEN_FILE_INVALID',
]);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    const topic = command === 'help' ? rest[0] : undefined;
    process.stdout.write(topic && COMMANDS[topic] ? COMMANDS[topic].help : MAIN_HELP);
    return 0;
  }
  if (command === '--version' || command === 'version') {
    process.stdout.write(`${crosscredVersion()}\n`);
    return 0;
  }
  const entry = COMMANDS[command];
  if (!entry) {
    process.stderr.write(`crosscred: unknown command "${command}"\n\n${MAIN_HELP}`);
    return EXIT_USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(entry.help);
    return 0;
  }
  try {
    return await (await entry.load())(rest);
  } catch (err) {
    if (err instanceof CrosscredError) {
      process.stderr.write(`crosscred ${command}: ${err.describe()}\n`);
      return CONFIGURATION_ERRORS.has(err.code) ? EXIT_CONFIG : 1;
    }
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`crosscred ${command}: ${err.message}\nRun 'crosscred ${command} --help' for the options.\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`crosscred ${command}: unexpected error: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

// A promise rather than a top-level await: the single-executable build bundles this entry into
// CommonJS, which has no top-level await.
void main(process.argv.slice(2)).then((code) => {
  // The daemon keeps running on its own; other commands end here.
  if (code !== -1) process.exitCode = code;
});
