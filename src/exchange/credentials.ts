import type { CloudName } from '../core/clouds.js';
import type { AlibabaCredentials } from '../platform/alibaba/credentials.js';
import type { AwsCredentials } from '../platform/aws/credentials.js';
import type { TencentCredentials } from '../platform/tencent/credentials.js';

/**
 * The credential port. Each cloud's STS sits behind it; what is above it (the cache, the
 * endpoints, metrics) never knows which cloud answered except through the `cloud` tag.
 */

/** Short-lived credentials from any cloud's STS, tagged with their cloud. */
export type CloudCredentials = AwsCredentials | AlibabaCredentials | TencentCredentials;

/** The clouds whose STS crosscred can exchange a token at. */
export type Cloud = CloudCredentials['cloud'];

/**
 * Trades one web-identity token for one role's credentials at one cloud's STS. It is handed the
 * token: where the token comes from, and reading it again when STS says it expired, belong to
 * whatever composes a role (src/roles/).
 */
export interface WebIdentityExchange<C extends CloudCredentials = CloudCredentials> {
  readonly cloud: C['cloud'];
  /**
   * `signal` aborts the exchange (the cache's deadline passed): nothing more is sent for it.
   * `sessionName`, when given, replaces the configured one (a template filled in from the token).
   */
  exchange(token: string, signal?: AbortSignal, sessionName?: string): Promise<C>;
}

/** Anything that can produce fresh credentials for one named role: what the cache refreshes from. */
export interface CredentialExchange {
  readonly roleName: string;
  /** `signal` aborts the exchange (the cache's deadline passed): nothing more is sent for it. */
  exchange(signal?: AbortSignal): Promise<CloudCredentials>;
}

/** Compile-time guard: the credential union names exactly the clouds of core/clouds.ts. */
const cloudsMatch: [Cloud] extends [CloudName] ? ([CloudName] extends [Cloud] ? true : never) : never = true;
void cloudsMatch;
