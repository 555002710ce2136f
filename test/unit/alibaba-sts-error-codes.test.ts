import { describe, expect, it } from 'vitest';
import { CloudStsRefusal } from '../../src/exchange/cloud-sts-refusal.js';
import { classifyFailure } from '../../src/exchange/failure.js';
import { ALIBABA_STS_EXPIRED_TOKEN_CODES, ALIBABA_STS_RETRYABLE_CODES, ALIBABA_STS_TERMINAL_CODES } from '../../src/platform/alibaba/sts-error-codes.js';

const refusal = (code: string, status: number) => new CloudStsRefusal('alibaba', code, status, `Alibaba Cloud STS refused: ${code}`);

describe("Alibaba STS's error codes", () => {
  it('are in exactly one set each', () => {
    const all = [...ALIBABA_STS_EXPIRED_TOKEN_CODES, ...ALIBABA_STS_TERMINAL_CODES, ...ALIBABA_STS_RETRYABLE_CODES];
    expect(new Set(all).size).toBe(all.length);
  });

  it.each([
    ['AuthenticationFail.OIDCToken.Expired', 401, 'token-expired'],
    ['AuthenticationFail.NoPermission', 401, 'terminal'],
    ['AuthenticationFail.OIDCToken.AudienceNotMatch', 401, 'terminal'],
    ['AuthenticationFail.OIDCToken.IssuerNotMatch', 401, 'terminal'],
    ['AuthenticationFail.OIDCToken.InvalidSignature', 401, 'terminal'],
    ['EntityNotExist.Role', 404, 'terminal'],
    ['InvalidParameter.DurationSeconds', 400, 'terminal'],
    // A code in a set wins over its status: STS throttles with a 400.
    ['Throttling.User', 400, 'retryable'],
    ['ServiceUnavailable', 503, 'retryable'],
    ['AuthenticationFail.OIDCToken.IssuerConfigurationBroken', 401, 'retryable'],
    // Unknown codes go by status.
    ['Brand.New.Code', 400, 'terminal'],
    ['Brand.New.Code', 429, 'retryable'],
    ['HTTP502', 502, 'retryable'],
    ['HTTP403', 403, 'terminal'],
  ] as const)('classify %s (HTTP %i) as %s', (code, status, kind) => {
    expect(classifyFailure(refusal(code, status))).toMatchObject({ kind, code });
  });

  it('name the cloud in the message', () => {
    expect(classifyFailure(refusal('EntityNotExist.Role', 404)).message).toBe('Alibaba Cloud STS refused the exchange: EntityNotExist.Role');
  });
});
