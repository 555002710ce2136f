import tencentCommon from 'tencentcloud-sdk-nodejs-common';
import type { Clock } from '../../core/clock.js';
import { CrosscredError } from '../../core/errors.js';

// The SDK is CommonJS and exports CvmRoleCredential through a getter, which Node's ESM named-export
// detection does not see: take it from the default import, which is the whole `module.exports`
// under Node and under esbuild alike (a static import the single-executable bundle follows).
const { CvmRoleCredential } = tencentCommon;

/** A CAM role's temporary key, as the CVM metadata server hands it out. Secret: never log it. */
export interface TencentRoleCredentials {
  readonly secretId: string;
  readonly secretKey: string;
  /** X-TC-Token; empty for a permanent key (which the issuer refuses anyway: it is not a role's). */
  readonly token: string;
}

/** The metadata server answers in milliseconds; a hung one must not hold a renewal forever. */
const METADATA_TIMEOUT_MS = 5_000;
/** A CAM role name: letters, digits and `+=,.@_-`, at most 128 characters (it goes into a URL path). */
const ROLE_NAME = /^[A-Za-z0-9+=,.@_-]{1,128}$/;
const MAX_SHOWN_CHARS = 200;

/**
 * The SDK's `CvmRoleCredential`, used for its two metadata calls (the role name, then that role's
 * key, checked for `Code: "Success"`). Its own `getCredential()` is not used: it would keep the
 * role name forever and hide `ExpiredTime`.
 */
class CvmRoleMetadata extends CvmRoleCredential {
  roleName(): Promise<string> {
    return withoutLowerCaseHttpProxy(() => this.getRoleName());
  }

  roleCredential(roleName: string) {
    return withoutLowerCaseHttpProxy(() => this.getRoleCredential(roleName));
  }
}

/**
 * The SDK's fetch sends every request, the metadata one included, through `https-proxy-agent` when
 * the lower-case `http_proxy` is set, and ignores `no_proxy` (research §4.2). Through a proxy the
 * role key would cross the network in clear, or come from the proxy host's own metadata server.
 * The SDK reads the variable synchronously when the request starts, so it is hidden for exactly
 * that synchronous span and restored before anything else can run: no other code ever sees it missing.
 */
function withoutLowerCaseHttpProxy<T>(start: () => Promise<T>): Promise<T> {
  const saved = process.env['http_proxy'];
  if (saved === undefined) return start();
  delete process.env['http_proxy'];
  try {
    return start();
  } finally {
    process.env['http_proxy'] = saved;
  }
}

/**
 * Returns a function that reads the instance's CAM role key from the CVM metadata server
 * (`http://metadata.tencentyun.com/latest/meta-data/cam/security-credentials/…`) with the official
 * SDK, fresh each time it is called: the source asks only when it needs a new attestation, about
 * once per JWT lifetime. Errors are CrosscredError TENCENT_CVM_ROLE_UNAVAILABLE without secrets.
 */
export function cvmRoleCredentials(clock: Clock): () => Promise<TencentRoleCredentials> {
  const metadata = new CvmRoleMetadata();
  return async () => {
    const roleName = (await withDeadline(clock, metadata.roleName(), 'naming the CAM role bound to this instance')).trim();
    if (!ROLE_NAME.test(roleName)) {
      throw unavailable('the metadata server did not answer a CAM role name (is a role bound to this instance?)');
    }
    const answer = await withDeadline(clock, metadata.roleCredential(roleName), `handing out the key of CAM role ${roleName}`);
    const { TmpSecretId: secretId, TmpSecretKey: secretKey, Token: token, ExpiredTime: expiredTime } = answer as unknown as Partial<Record<string, unknown>>;
    if (typeof secretId !== 'string' || typeof secretKey !== 'string' || typeof token !== 'string' || !secretId || !secretKey || !token) {
      throw unavailable(`the metadata server answered for CAM role ${roleName} without TmpSecretId, TmpSecretKey and Token`);
    }
    if (typeof expiredTime === 'number' && expiredTime * 1000 <= clock.wallNow()) {
      throw unavailable(
        `the metadata server handed out a key for CAM role ${roleName} that expired at ${new Date(expiredTime * 1000).toISOString()} (check this host's clock)`,
      );
    }
    return { secretId, secretKey, token };
  };
}

async function withDeadline<T>(clock: Clock, work: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<Clock['setTimeout']> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = clock.setTimeout(() => reject(unavailable(`the metadata server took longer than ${METADATA_TIMEOUT_MS} ms ${what}`)), METADATA_TIMEOUT_MS);
    timer.unref?.();
  });
  try {
    return await Promise.race([work, deadline]);
  } catch (err) {
    if (err instanceof CrosscredError) throw err;
    throw unavailable(`the metadata server failed ${what}: ${describe(err)}`);
  } finally {
    if (timer) clock.clearTimeout(timer);
  }
}

function unavailable(text: string): CrosscredError {
  return new CrosscredError('TENCENT_CVM_ROLE_UNAVAILABLE', `tencent-cvm: ${text}`);
}

/**
 * The SDK's own messages name the role and the HTTP status or Code; node-fetch's name the URL and
 * errno. A JSON parse error is not passed on, nor is any error kept as `cause`: V8 quotes the text
 * it failed on, which here would be a piece of the role key.
 */
function describe(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if ((err as { type?: unknown } | null)?.type === 'invalid-json' || /JSON/i.test(message)) return 'its answer is not JSON';
  return shorten(message);
}

function shorten(text: string): string {
  const clean = text
    .replace(/[^\x20-\x7e]/g, ' ')
    .replace(/ {2,}/g, ' ')
    .trim();
  return clean.length > MAX_SHOWN_CHARS ? `${clean.slice(0, MAX_SHOWN_CHARS - 1)}…` : clean;
}
