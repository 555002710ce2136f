import type { Config } from '../config/config.js';
import { pickSetting } from '../config/layers.js';
import { loadConfig, type ServeFlags } from '../config/load.js';
import { cloudOf } from '../config/resolve-roles.js';
import type { CloudName } from '../core/clouds.js';

/**
 * A role ARN that stands in when none is configured, so that `doctor` and `trust-policy` can still
 * find and explain the token (they say that the role is missing).
 */
export const PLACEHOLDER_ROLE_ARN = 'arn:aws:iam::000000000000:role/crosscred-doctor-placeholder';

/** The same for a role of each cloud (--cloud): each must parse as that cloud's role ARN. */
const PLACEHOLDERS: Record<CloudName, string> = {
  aws: PLACEHOLDER_ROLE_ARN,
  alibaba: 'acs:ram::0:role/crosscred-doctor-placeholder',
  tencent: 'qcs::cam::uin/0:roleName/crosscred-doctor-placeholder',
};

/** The configuration as `serve` would load it, minus listeners (the advice commands serve nothing). */
export function loadConfigForAdvice(flags: ServeFlags): { config: Config; roleConfigured: boolean } {
  const layers = { flags, env: process.env, file: {}, fileOrigin: 'config file' };
  const cloud = cloudOf(pickSetting('cloud', layers)?.value);
  const roleConfigured = Boolean(flags.config || process.env['CROSSCRED_CONFIG'] || pickSetting('roleArn', layers, cloud));
  const config = loadConfig({
    flags: {
      ...flags,
      'admin-listen': 'off',
      // A config file's listeners name its roles; otherwise any free loopback port will do.
      ...(flags.config || process.env['CROSSCRED_CONFIG'] ? {} : { listen: ['127.0.0.1:0'] }),
      ...(roleConfigured ? {} : { 'role-arn': PLACEHOLDERS[cloud] }),
    },
    env: process.env,
  });
  return { config, roleConfigured };
}
