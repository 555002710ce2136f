import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationError } from '../../src/issuer/attestor.js';
import { TencentCamRoleAttestor } from '../../src/issuer/attestors/tencent-cam-role.js';
import { encodeSubjectToken } from '../../src/protocol/issuer-token-exchange.js';
import { signTencentGetCallerIdentity } from '../../src/sources/tencent-cvm-token-source.js';
import { FakeTencentSts } from '../support/fake-tencent-cloud.js';

/**
 * Issue #11 item 8: a CAM-role attestation proves a role session, which any principal allowed to
 * assume the role can hold, not a CVM instance; the attestor's refusal must not claim otherwise.
 */

const ISSUER = 'https://issuer.crosscred.test';
let sts: FakeTencentSts;
let attestor: TencentCamRoleAttestor;

beforeAll(async () => {
  sts = await FakeTencentSts.start();
  attestor = new TencentCamRoleAttestor({ extraStsEndpoints: [sts.url], timeoutMs: 5_000 });
});
afterAll(async () => {
  await attestor?.close();
  await sts?.close();
});

describe('Tencent CAM-role refusal text (issue #11 item 8)', () => {
  it("refuses a CAM user's key saying that role credentials are required, without claiming they must be a CVM's", async () => {
    const user = sts.issueUserKey({ uin: '100012345678', subUin: '100099999999' });
    const attestation = signTencentGetCallerIdentity({
      credentials: { secretId: user.secretId, secretKey: user.secretKey, token: user.token },
      issuerUrl: ISSUER,
      stsEndpoint: sts.url,
      timestamp: Math.floor(Date.now() / 1000),
    });
    const error = await attestor.attest(encodeSubjectToken(attestation), { issuerUrl: ISSUER, nowWall: Date.now(), signal: AbortSignal.timeout(10_000) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AttestationError);
    expect((error as AttestationError).message).toMatch(/not a CAMRole: only CAM role \(assumed-role\) credentials are accepted/);
    expect((error as AttestationError).message).not.toMatch(/CVM/);
  });
});
