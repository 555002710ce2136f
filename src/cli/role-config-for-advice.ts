import type { Config } from '../config/config.js';
import { loadConfig, type ServeFlags } from '../config/load.js';

/**
 * A role ARN that stands in when none is configured, so that `doctor` and `trust-policy` can still
 * find and explain the token (they say that the role is missing).
 */
export const PLACEHOLDER_ROLE_ARN = 'arn:aws:iam::000000000000:role/crosscred-doctor-placeholder';

/** The configuration as `serve` would load it, minus listeners (the advice commands serve nothing). */
export function loadConfigForAdvice(flags: ServeFlags): { config: Config; roleConfigured: boolean } {
  const roleConfigured = Boolean(flags.config || flags['role-arn'] || process.env['AWS_ROLE_ARN'] || process.env['CROSSCRED_CONFIG']);
  const config = loadConfig({
    flags: {
      ...flags,
      'admin-listen': 'off',
      // A config file's listeners name its roles; otherwise any free loopback port will do.
      ...(flags.config || process.env['CROSSCRED_CONFIG'] ? {} : { listen: ['127.0.0.1:0'] }),
      ...(roleConfigured ? {} : { 'role-arn': PLACEHOLDER_ROLE_ARN }),
    },
    env: process.env,
  });
  return { config, roleConfigured };
}
