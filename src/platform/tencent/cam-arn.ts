/**
 * Tencent Cloud CAM role ARNs, `qcs::cam::uin/<owner uin>:roleName/<name>`, and the name of a CAM
 * OIDC identity provider (`ProviderId`). One parser for every place that reads them (configuration,
 * trust-policy advice, the webhook), so all accept the same strings. The demo's STS stand-in checks
 * them by its own pattern, written from the documentation, so that crosscred is checked against it
 * rather than against itself.
 */
export interface CamRoleArn {
  /** The owner account's uin: digits only. */
  readonly accountId: string;
  readonly name: string;
}

/** CAM: a role name is 1–128 letters, digits and `+=,.@_-`. */
const ROLE = /^qcs::cam::uin\/(\d{1,20}):roleName\/([\w+=,.@-]{1,128})$/;
/** CAM: an identity provider's name is 1–128 letters, digits and `+=,.@_-`. */
const PROVIDER_ID = /^[\w+=,.@-]{1,128}$/;

export function parseCamRoleArn(text: string): CamRoleArn | { readonly problem: string } {
  const m = ROLE.exec(text);
  if (!m) return { problem: 'is not a CAM role ARN (qcs::cam::uin/<owner uin>:roleName/<name>)' };
  return { accountId: m[1]!, name: m[2]! };
}

/** Undefined when the text can be a CAM identity provider's name, else why not. */
export function providerIdProblem(text: string): string | undefined {
  return PROVIDER_ID.test(text) ? undefined : 'is not a CAM identity provider name (1 to 128 letters, digits and +=,.@_-)';
}
