import type { TokenClaimsSummary } from '../sources/token-source.js';
import { shellJoin } from './trust-policy.js';

/**
 * What Alibaba Cloud RAM or Tencent Cloud CAM needs so that its STS accepts a token: an OIDC
 * identity provider for the token's issuer with its audience as a client id, and a role trust
 * policy that lets that provider assume the role, pinned to the token's issuer, audience and
 * subject. The AWS counterpart is trust-policy.ts.
 *
 * Written from each cloud's documentation (RAM: "Create a RAM role for a trusted IdP", the
 * AssumeRoleWithOIDC and CreateOIDCProvider APIs; CAM: CreateOIDCConfig and the role-SSO OIDC
 * guide); the commands use each cloud's generic CLI form (`aliyun ims <Api> --Param`, `tccli cam
 * <Api> --Param`). Not run against a real account.
 */
export interface OtherCloudTrustAdvice {
  readonly cloud: 'alibaba' | 'tencent';
  /** The provider as the cloud names it: RAM's OIDC provider ARN, or CAM's provider name (ProviderId). */
  readonly provider: string;
  /** argv of the CLI command that registers the issuer (once per issuer and account). */
  readonly createProviderCommand: readonly string[];
  /** Shell lines (comments included) that compute what the command needs and cannot be known here. */
  readonly preparation: readonly string[];
  /** The role trust policy, in the cloud's own policy language. */
  readonly trustPolicy: unknown;
  /** argv of the CLI command that sets the policy on an existing role, reading trust-policy.json. */
  readonly updateRoleCommand: readonly string[];
  readonly notes: readonly string[];
}

export interface OtherCloudTrustInputs {
  readonly claims: TokenClaimsSummary;
  /** Alibaba: the role's RAM OIDC provider ARN (acs:ram::<uid>:oidc-provider/<name>). */
  readonly oidcProviderArn?: string;
  /** Tencent: the CAM provider name (ProviderId) and the owner uin. */
  readonly providerId?: string;
  readonly accountId: string;
  readonly roleName: string;
  /** A StringLike pattern for `sub` instead of the token's exact one. */
  readonly subjectPattern?: string;
}

/** The token's issuer, audience and subject, or why the cloud could not trust it. */
function trustedClaims(
  claims: TokenClaimsSummary,
  cloudWords: string,
): { iss: string; aud: string; audiences: string[]; sub: string; notes: string[] } | { problem: string } {
  if (!claims.iss) return { problem: `the token has no "iss" claim; ${cloudWords} needs an issuer URL` };
  let issuer: URL;
  try {
    issuer = new URL(claims.iss);
  } catch {
    return { problem: `the token's issuer ${JSON.stringify(claims.iss)} is not a URL` };
  }
  if (!claims.sub) return { problem: 'the token has no "sub" claim to pin the trust policy to' };
  const audiences = typeof claims.aud === 'string' ? [claims.aud] : [...(claims.aud ?? [])];
  if (audiences.length === 0) return { problem: `the token has no "aud" claim; ${cloudWords} matches it against the provider's client ids` };
  const notes: string[] = [];
  if (issuer.protocol !== 'https:') notes.push(`The issuer ${claims.iss} is not HTTPS: ${cloudWords} accepts only https:// issuers.`);
  if (audiences.length > 1) notes.push(`The token names several audiences (${audiences.join(', ')}); the policy pins ${audiences[0]}.`);
  return { iss: claims.iss, aud: audiences[0]!, audiences, sub: claims.sub, notes };
}

/** The advice for a RAM role (Alibaba Cloud), or a problem sentence. */
export function ramTrustPolicyFor(inputs: OtherCloudTrustInputs): OtherCloudTrustAdvice | { readonly problem: string } {
  const t = trustedClaims(inputs.claims, 'RAM');
  if ('problem' in t) return t;
  const providerArn = inputs.oidcProviderArn ?? `acs:ram::${inputs.accountId}:oidc-provider/<PROVIDER_NAME>`;
  const providerName = providerArn.split('/').pop()!;
  const host = new URL(t.iss).host;
  const subject = inputs.subjectPattern ?? t.sub;
  const like = /[*?]/.test(subject);
  return {
    cloud: 'alibaba',
    provider: providerArn,
    preparation: [
      "# RAM pins the issuer's TLS certificate: its SHA-1 fingerprint, without colons.",
      `FINGERPRINT="$(openssl s_client -connect ${host.includes(':') ? host : `${host}:443`} -servername ${host.split(':')[0]} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha1 | cut -d= -f2 | tr -d :)"`,
    ],
    createProviderCommand: [
      'aliyun',
      'ims',
      'CreateOIDCProvider',
      '--OIDCProviderName',
      providerName,
      '--IssuerUrl',
      t.iss,
      '--ClientIds',
      t.audiences.join(','),
      '--Fingerprints',
      '"$FINGERPRINT"',
    ],
    trustPolicy: {
      Version: '1',
      Statement: [
        {
          Action: 'sts:AssumeRole',
          Effect: 'Allow',
          Principal: { Federated: [providerArn] },
          // RAM requires oidc:iss with StringEquals; aud and sub pin the workload.
          Condition: like
            ? { StringEquals: { 'oidc:iss': t.iss, 'oidc:aud': t.aud }, StringLike: { 'oidc:sub': subject } }
            : { StringEquals: { 'oidc:iss': t.iss, 'oidc:aud': t.aud, 'oidc:sub': subject } },
        },
      ],
    },
    updateRoleCommand: ['aliyun', 'ram', 'UpdateRole', '--RoleName', inputs.roleName, '--NewAssumeRolePolicyDocument', '"$(cat trust-policy.json)"'],
    notes: [
      ...t.notes,
      ...(inputs.oidcProviderArn ? [] : ['No --oidc-provider-arn is configured: replace <PROVIDER_NAME> with the provider you create.']),
      "The token's audience must be one of the provider's client ids: crosscred asks for sts.aliyuncs.com by default (--token-audience).",
    ],
  };
}

/** The advice for a CAM role (Tencent Cloud), or a problem sentence. */
export function camTrustPolicyFor(inputs: OtherCloudTrustInputs): OtherCloudTrustAdvice | { readonly problem: string } {
  const t = trustedClaims(inputs.claims, 'CAM');
  if ('problem' in t) return t;
  const providerId = inputs.providerId ?? '<PROVIDER_ID>';
  const subject = inputs.subjectPattern ?? t.sub;
  const like = /[*?]/.test(subject);
  const discovery = `${t.iss.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  return {
    cloud: 'tencent',
    provider: providerId,
    preparation: [
      "# CAM is given the issuer's signing keys (its JWKS, base64) rather than fetching them: update the",
      '# provider (UpdateOIDCConfig) whenever the issuer rotates its keys.',
      `IDENTITY_KEY="$(curl -fsS "$(curl -fsS ${shellJoin([discovery])} | jq -r .jwks_uri)" | base64 -w0)"`,
    ],
    createProviderCommand: [
      'tccli',
      'cam',
      'CreateOIDCConfig',
      '--Name',
      providerId,
      '--IdentityUrl',
      t.iss,
      '--ClientId',
      JSON.stringify(t.audiences),
      '--IdentityKey',
      '"$IDENTITY_KEY"',
    ],
    trustPolicy: {
      version: '2.0',
      statement: [
        {
          action: 'name/sts:AssumeRoleWithWebIdentity',
          effect: 'allow',
          principal: { federated: [`qcs::cam::uin/${inputs.accountId}:oidc-provider/${providerId}`] },
          condition: like
            ? { string_equal: { 'oidc:iss': [t.iss], 'oidc:aud': [t.aud] }, string_like: { 'oidc:sub': [subject] } }
            : { string_equal: { 'oidc:iss': [t.iss], 'oidc:aud': [t.aud], 'oidc:sub': [subject] } },
        },
      ],
    },
    updateRoleCommand: ['tccli', 'cam', 'UpdateAssumeRolePolicy', '--RoleName', inputs.roleName, '--PolicyDocument', '"$(cat trust-policy.json)"'],
    notes: [
      ...t.notes,
      ...(inputs.providerId ? [] : ['No --provider-id is configured: replace <PROVIDER_ID> with the provider you create.']),
      "The token's audience must be one of the provider's client ids: crosscred asks for sts.cloud.tencent.com by default (--token-audience).",
    ],
  };
}

/** The advice as a person reads it: commented shell and the policy JSON, ready to paste. */
export function formatOtherCloudTrustText(advice: OtherCloudTrustAdvice): string {
  const name = advice.cloud === 'alibaba' ? 'RAM' : 'CAM';
  // The placeholders are shell variables set by the preparation lines, so they stay unquoted.
  const command = (argv: readonly string[]) => argv.map((a) => (a.startsWith('"$') ? a : shellJoin([a]))).join(' ');
  const lines = [
    `# 1. Register the token issuer as a ${name} OIDC identity provider (once per issuer and account).`,
    ...advice.preparation,
    command(advice.createProviderCommand),
    '',
    `# 2. Save the trust policy below as trust-policy.json, then set it on the role:`,
    `#    ${command(advice.updateRoleCommand)}`,
    JSON.stringify(advice.trustPolicy, null, 2),
  ];
  if (advice.notes.length > 0) lines.push('', ...advice.notes.map((n) => `# Note: ${n}`));
  return `${lines.join('\n')}\n`;
}
