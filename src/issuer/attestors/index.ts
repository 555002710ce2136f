import { readFile } from 'node:fs/promises';
import { CrosscredError } from '../../core/errors.js';
import { SUBJECT_TOKEN_TYPES, type SubjectTokenType } from '../../protocol/issuer-token-exchange.js';
import type { Attestor } from '../attestor.js';
import type { IssuerConfig } from '../issuer-config.js';

/**
 * Time kept back from the token request's attestation deadline for the attestor's own call to a
 * cloud's STS, in ms: the call times out (and the attestor says why) before the request does.
 */
const STS_CALL_MARGIN_MS = 500;
/** A certificate or CA bundle file is a few kilobytes; anything far larger is a mistake. */
const MAX_PEM_FILE_BYTES = 1024 * 1024;

async function readPem(path: string, setting: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CrosscredError('CONFIG_INVALID', `${setting}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (text.length > MAX_PEM_FILE_BYTES || !text.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CrosscredError('CONFIG_INVALID', `${setting}: ${path} is not a PEM certificate file`);
  }
  return text;
}

/**
 * Builds the attestors of the kinds the configuration enables (those under `attestors:`), keyed by
 * their subject token type. Each attestor's module is loaded only when its kind is configured:
 * PKCS#7 verification (pkijs) stays out of an issuer that attests only signed STS requests.
 */
export async function createAttestors(config: IssuerConfig): Promise<ReadonlyMap<SubjectTokenType, Attestor>> {
  const attestors = new Map<SubjectTokenType, Attestor>();
  const caBundle = config.caBundleFile ? await readPem(config.caBundleFile, 'caBundleFile') : undefined;
  const timeoutMs = Math.max(1_000, config.attestationTimeoutMs - STS_CALL_MARGIN_MS);
  const settings = config.attestors;
  try {
    if (settings.alibabaEcsIdentity) {
      const signingCertificatesPem = await Promise.all(
        settings.alibabaEcsIdentity.signingCertificateFiles.map((f) => readPem(f, 'attestors.alibabaEcsIdentity.signingCertificateFiles')),
      );
      const { AlibabaEcsIdentityAttestor } = await import('./alibaba-ecs-identity.js');
      attestors.set(SUBJECT_TOKEN_TYPES.alibabaEcsIdentity, new AlibabaEcsIdentityAttestor({ signingCertificatesPem }));
    }
    if (settings.alibabaRamRole) {
      const { AlibabaRamRoleAttestor } = await import('./alibaba-ram-role.js');
      attestors.set(
        SUBJECT_TOKEN_TYPES.alibabaRamRole,
        new AlibabaRamRoleAttestor({ extraStsEndpoints: settings.alibabaRamRole.extraStsEndpoints, timeoutMs, ...(caBundle ? { caBundle } : {}) }),
      );
    }
    if (settings.tencentCamRole) {
      const { TencentCamRoleAttestor } = await import('./tencent-cam-role.js');
      attestors.set(
        SUBJECT_TOKEN_TYPES.tencentCamRole,
        new TencentCamRoleAttestor({ extraStsEndpoints: settings.tencentCamRole.extraStsEndpoints, timeoutMs, ...(caBundle ? { caBundle } : {}) }),
      );
    }
  } catch (err) {
    if (err instanceof CrosscredError) throw err;
    // A constructor refuses settings it cannot use (a certificate that does not parse, an endpoint
    // that is not a URL); its message names the setting and holds no secret.
    throw new CrosscredError('ISSUER_ATTESTOR_UNAVAILABLE', (err as Error).message ?? String(err));
  }
  return attestors;
}
