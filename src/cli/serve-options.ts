import type { ParseArgsConfig } from 'node:util';

/** The options of `crosscred serve`, shared with `credential-process` and `demo`. Help text lives in help.ts. */
export const SERVE_OPTIONS = {
  config: { type: 'string' },
  'role-arn': { type: 'string' },
  'token-file': { type: 'string' },
  'role-session-name': { type: 'string' },
  'role-name': { type: 'string' },
  region: { type: 'string' },
  'sts-endpoint': { type: 'string' },
  'ca-bundle': { type: 'string' },
  'duration-seconds': { type: 'string' },
  listen: { type: 'string', multiple: true },
  'admin-listen': { type: 'string' },
  'auth-token-file': { type: 'string' },
  'allow-imdsv1': { type: 'boolean' },
  'allow-remote': { type: 'boolean' },
  'allowed-host': { type: 'string', multiple: true },
  'log-level': { type: 'string' },
  'sts-connect-timeout-ms': { type: 'string' },
  'sts-timeout-ms': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];
