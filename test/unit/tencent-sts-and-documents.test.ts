import { describe, expect, it } from 'vitest';
import { CloudStsRefusal, STS_CODE_SHAPE } from '../../src/exchange/cloud-sts-refusal.js';
import { classifyFailure } from '../../src/exchange/failure.js';
import { cvmRoleCredentialDocument, type ReceivedTencentCredentials } from '../../src/platform/tencent/credential-documents.js';
import type { TencentCredentials } from '../../src/platform/tencent/credentials.js';
import { TENCENT_STS_EXPIRED_TOKEN_CODES, TENCENT_STS_RETRYABLE_CODES, TENCENT_STS_TERMINAL_CODES } from '../../src/platform/tencent/sts-error-codes.js';

/** Tencent's STS code tables as the one classifier reads them, and the CVM metadata credentials document. */

const refusal = (code: string) => new CloudStsRefusal('tencent', code, 200, `Tencent Cloud STS refused: ${code}`);

describe('Tencent STS error codes', () => {
  const tables = { expired: TENCENT_STS_EXPIRED_TOKEN_CODES, terminal: TENCENT_STS_TERMINAL_CODES, retryable: TENCENT_STS_RETRYABLE_CODES };

  it('puts each code in one table only, and every code has the shape the refusal believes', () => {
    const all = [...tables.expired, ...tables.terminal, ...tables.retryable];
    expect(new Set(all).size).toBe(all.length);
    for (const code of all) expect(code).toMatch(STS_CODE_SHAPE);
  });

  it.each([
    ['InvalidParameter.WebIdentityTokenError', 'token-expired'],
    ['ResourceNotFound.RoleNotFound', 'terminal'],
    ['UnauthorizedOperation', 'terminal'],
    ['InvalidParameter.ParamError', 'terminal'],
    ['InvalidParameter.AccountNotAvaliable', 'terminal'],
    ['AuthFailure.SignatureExpire', 'terminal'],
    ['RequestLimitExceeded', 'retryable'],
    ['InternalError.SystemError', 'retryable'],
    ['InternalError.GetRoleError', 'retryable'],
    ['SomethingTencentAddsLater', 'terminal'],
  ] as const)('classifies %s as %s, with the code as the metric label', (code, kind) => {
    expect(classifyFailure(refusal(code))).toMatchObject({ kind, code });
  });

  it('judges a refusal with no API answer by its HTTP status: 5xx and 429 retry, another 4xx is terminal', () => {
    expect(classifyFailure(new CloudStsRefusal('tencent', 'HTTP503', 503, 'x')).kind).toBe('retryable');
    expect(classifyFailure(new CloudStsRefusal('tencent', 'HTTP429', 429, 'x')).kind).toBe('retryable');
    expect(classifyFailure(new CloudStsRefusal('tencent', 'HTTP403', 403, 'x')).kind).toBe('terminal');
  });
});

describe('the CVM metadata role-credentials document', () => {
  const credentials: TencentCredentials = {
    cloud: 'tencent',
    secretId: 'AKIDexampleexampleexample1234',
    secretKey: 'secret-key-example',
    token: 'session-token-example',
    // Not on a whole second: ExpiredTime and Expiration round it down, never later than STS said.
    expirationWall: Date.UTC(2026, 11, 7, 23, 30, 15, 900),
    roleArn: 'qcs::cam::uin/100012345678:roleName/app',
    accountId: '100012345678',
  };

  it('has the metadata server fields in its order, Unix-second ExpiredTime and an RFC 3339 Expiration without fractions', () => {
    const doc = JSON.parse(cvmRoleCredentialDocument({ credentials }).toString('utf8')) as Record<string, unknown>;
    expect(Object.keys(doc)).toEqual(['TmpSecretId', 'TmpSecretKey', 'ExpiredTime', 'Expiration', 'Token', 'Code']);
    expect(doc).toEqual({
      TmpSecretId: credentials.secretId,
      TmpSecretKey: credentials.secretKey,
      ExpiredTime: Date.UTC(2026, 11, 7, 23, 30, 15) / 1000,
      Expiration: '2026-12-07T23:30:15Z',
      Token: credentials.token,
      Code: 'Success',
    });
  });

  it('is rendered once per cache entry and again for a new entry', () => {
    const entry: ReceivedTencentCredentials = { credentials };
    expect(cvmRoleCredentialDocument(entry)).toBe(cvmRoleCredentialDocument(entry));
    const renewed: ReceivedTencentCredentials = { credentials: { ...credentials, secretId: 'AKIDrenewedrenewedrenewed1234' } };
    expect(cvmRoleCredentialDocument(renewed)).not.toBe(cvmRoleCredentialDocument(entry));
    expect(cvmRoleCredentialDocument(renewed).toString()).toContain('AKIDrenewed');
  });
});
