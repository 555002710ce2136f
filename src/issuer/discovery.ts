import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ISSUER_PATHS, TOKEN_EXCHANGE_GRANT_TYPE } from '../protocol/issuer-token-exchange.js';
import { ATTESTATION_CLAIM, AWS_TAGS_CLAIM } from '../protocol/workload-identity.js';
import type { IssuerKeySet } from './keys.js';

/**
 * The two documents AWS IAM reads: the OIDC discovery document and the JWKS it names. They are
 * rendered once per key set into bytes that the server serves and `export-discovery` writes, so a
 * bucket and the live issuer can never disagree.
 */
export interface DiscoveryDocuments {
  /** `/.well-known/openid-configuration` */
  readonly openidConfiguration: Buffer;
  /** `/.well-known/jwks.json` */
  readonly jwks: Buffer;
}

/**
 * OIDC Discovery 1.0 makes `authorization_endpoint` required; an issuer that only mints tokens
 * has none, and names that with a URN as Kubernetes (and so EKS) does
 * (`urn:kubernetes:programmatic_authorization`). AWS IAM does not read it.
 */
export const AUTHORIZATION_ENDPOINT_PLACEHOLDER = 'urn:crosscred:programmatic_authorization';

export const CLAIMS_SUPPORTED = ['iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'jti', ATTESTATION_CLAIM, AWS_TAGS_CLAIM] as const;

/** The JWKS URL of an issuer URL (which has no trailing slash, see issuerUrlProblem). */
export function jwksUrlOf(issuerUrl: string): string {
  return `${issuerUrl}${ISSUER_PATHS.jwks}`;
}

export function renderDiscovery(options: { issuerUrl: string; tokenEndpointUrl: string; keys: IssuerKeySet }): DiscoveryDocuments {
  const algorithms = [...new Set(options.keys.published.map((k) => k.alg))].sort();
  const configuration = {
    issuer: options.issuerUrl,
    jwks_uri: jwksUrlOf(options.issuerUrl),
    authorization_endpoint: AUTHORIZATION_ENDPOINT_PLACEHOLDER,
    token_endpoint: options.tokenEndpointUrl,
    grant_types_supported: [TOKEN_EXCHANGE_GRANT_TYPE],
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: algorithms,
    token_endpoint_auth_methods_supported: ['none'],
    claims_supported: CLAIMS_SUPPORTED,
  };
  const jwks = { keys: options.keys.published.map((k) => k.publicJwk) };
  return {
    openidConfiguration: Buffer.from(`${JSON.stringify(configuration, null, 2)}\n`),
    jwks: Buffer.from(`${JSON.stringify(jwks, null, 2)}\n`),
  };
}

/**
 * Writes both documents under `dir/.well-known/`, each replaced atomically (written to a
 * temporary file, then renamed), for upload to a public bucket. Returns the paths written.
 */
export async function writeDiscovery(dir: string, documents: DiscoveryDocuments): Promise<string[]> {
  const wellKnown = join(dir, '.well-known');
  await mkdir(wellKnown, { recursive: true, mode: 0o755 });
  const written: string[] = [];
  for (const [name, bytes] of [
    ['openid-configuration', documents.openidConfiguration],
    ['jwks.json', documents.jwks],
  ] as const) {
    const path = join(wellKnown, name);
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, path);
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    written.push(path);
  }
  return written;
}
