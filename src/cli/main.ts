#!/usr/bin/env node
import { CrosscredError } from '../errors.js';
import { runCredentialProcess } from './credential-process.js';
import { runDemo } from './demo.js';
import { EXIT_CONFIG, EXIT_USAGE } from './exit-codes.js';
import { runNetSetup } from './net-setup.js';
import { runWaitReady } from './wait-ready.js';
import { runDoctor } from './doctor.js';
import { CREDENTIAL_PROCESS_HELP, DEMO_HELP, DOCTOR_HELP, MAIN_HELP, NET_SETUP_HELP, SERVE_HELP, TRUST_POLICY_HELP, WAIT_READY_HELP } from './help.js';
import { runServe } from './serve.js';
import { runTrustPolicy } from './trust-policy.js';

// The AWS SDK warns on every start that its releases after January 2027 need Node 22. crosscred
// pins an exact SDK version that supports Node 20 (see package.json), so the warning would only
// alarm operators; the pin and its reason are documented in the README.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';


const COMMANDS: Record<string, { help: string; run: (args: string[]) => Promise<number> }> = {
  serve: { help: SERVE_HELP, run: runServe },
  'credential-process': { help: CREDENTIAL_PROCESS_HELP, run: runCredentialProcess },
  demo: { help: DEMO_HELP, run: runDemo },
  doctor: { help: DOCTOR_HELP, run: runDoctor },
  'trust-policy': { help: TRUST_POLICY_HELP, run: runTrustPolicy },
  'net-setup': { help: NET_SETUP_HELP, run: runNetSetup },
  'wait-ready': { help: WAIT_READY_HELP, run: runWaitReady },
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    const topic = command === 'help' ? rest[0] : undefined;
    process.stdout.write(topic && COMMANDS[topic] ? COMMANDS[topic].help : MAIN_HELP);
    return 0;
  }
  if (command === '--version' || command === 'version') {
    process.stdout.write(`${process.env['npm_package_version'] ?? (await packageVersion())}\n`);
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
    return await entry.run(rest);
  } catch (err) {
    if (err instanceof CrosscredError) {
      process.stderr.write(`crosscred ${command}: ${err.describe()}\n`);
      return err.code === 'CROSSCRED_ERR_CONFIG_INVALID' || err.code === 'CROSSCRED_ERR_CONFIG_FILE_UNREADABLE' ? EXIT_CONFIG : 1;
    }
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`crosscred ${command}: ${err.message}\nRun 'crosscred ${command} --help' for the options.\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`crosscred ${command}: unexpected error: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

async function packageVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const code = await main(process.argv.slice(2));
// The daemon keeps running on its own; other commands end here.
if (code !== -1) process.exitCode = code;
