/**
 * Alibaba Cloud RAM ARNs: a role, `acs:ram::<account uid>:role/<name>`, and an OIDC identity
 * provider, `acs:ram::<account uid>:oidc-provider/<name>`. One parser for every place that reads
 * them (configuration, trust-policy advice, the webhook), so all accept the same strings. The demo's STS
 * stand-in checks ARNs by its own pattern, written from the documentation, so that crosscred is
 * checked against it rather than against itself.
 */
export interface RamArn {
  /** The account uid: digits only (16 in accounts seen; 1–32 accepted). */
  readonly accountId: string;
  readonly name: string;
}

/** RAM: a role name is 1–64 letters, digits, `.` and `-`. */
const ROLE = /^acs:ram::(\d{1,32}):role\/([A-Za-z0-9.-]{1,64})$/;
/** RAM: an OIDC provider name is 1–128 letters, digits, `.` and `-`. */
const OIDC_PROVIDER = /^acs:ram::(\d{1,32}):oidc-provider\/([A-Za-z0-9.-]{1,128})$/;

export function parseRamRoleArn(text: string): RamArn | { readonly problem: string } {
  const m = ROLE.exec(text);
  if (!m) return { problem: 'is not a RAM role ARN (acs:ram::<account uid>:role/<name>, a name of 1 to 64 letters, digits, "." and "-")' };
  return { accountId: m[1]!, name: m[2]! };
}

export function parseRamOidcProviderArn(text: string): RamArn | { readonly problem: string } {
  const m = OIDC_PROVIDER.exec(text);
  if (!m) return { problem: 'is not a RAM OIDC provider ARN (acs:ram::<account uid>:oidc-provider/<name>)' };
  return { accountId: m[1]!, name: m[2]! };
}
