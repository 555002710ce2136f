import { describe, expect, it } from 'vitest';
import { camTrustPolicyFor, formatOtherCloudTrustText, ramTrustPolicyFor } from '../../src/advice/other-cloud-trust-policy.js';

const claims = { iss: 'https://oidc.example.com/cluster-1', sub: 'system:serviceaccount:apps:web', aud: 'sts.aliyuncs.com', exp: 0 };

describe('RAM trust policy advice (Alibaba roles)', () => {
  it('pins issuer, audience and subject, with the provider of the role', () => {
    const advice = ramTrustPolicyFor({
      claims,
      accountId: '1234567890123456',
      roleName: 'oss-reader',
      oidcProviderArn: 'acs:ram::1234567890123456:oidc-provider/eks-prod',
    });
    if ('problem' in advice) throw new Error(advice.problem);
    expect(advice.trustPolicy).toEqual({
      Version: '1',
      Statement: [
        {
          Action: 'sts:AssumeRole',
          Effect: 'Allow',
          Principal: { Federated: ['acs:ram::1234567890123456:oidc-provider/eks-prod'] },
          Condition: {
            StringEquals: { 'oidc:iss': claims.iss, 'oidc:aud': 'sts.aliyuncs.com', 'oidc:sub': 'system:serviceaccount:apps:web' },
          },
        },
      ],
    });
    expect(advice.createProviderCommand).toEqual([
      'aliyun',
      'ims',
      'CreateOIDCProvider',
      '--OIDCProviderName',
      'eks-prod',
      '--IssuerUrl',
      claims.iss,
      '--ClientIds',
      'sts.aliyuncs.com',
      '--Fingerprints',
      '"$FINGERPRINT"',
    ]);
    const text = formatOtherCloudTrustText(advice);
    expect(text).toContain('openssl s_client -connect oidc.example.com:443');
    expect(text).toContain('--Fingerprints "$FINGERPRINT"');
    expect(text).toContain('aliyun ram UpdateRole --RoleName oss-reader --NewAssumeRolePolicyDocument "$(cat trust-policy.json)"');
  });

  it('uses StringLike for a wildcard subject, and refuses a token without iss, sub or aud', () => {
    const advice = ramTrustPolicyFor({ claims, accountId: '1', roleName: 'r', subjectPattern: 'system:serviceaccount:apps:*' });
    if ('problem' in advice) throw new Error(advice.problem);
    expect(JSON.stringify(advice.trustPolicy)).toContain('"StringLike":{"oidc:sub":"system:serviceaccount:apps:*"}');
    expect(advice.notes.join('\n')).toContain('<PROVIDER_NAME>');
    expect(ramTrustPolicyFor({ claims: { ...claims, iss: undefined }, accountId: '1', roleName: 'r' })).toEqual({
      problem: expect.stringContaining('no "iss"'),
    });
    expect(ramTrustPolicyFor({ claims: { ...claims, sub: undefined }, accountId: '1', roleName: 'r' })).toEqual({
      problem: expect.stringContaining('no "sub"'),
    });
    expect(ramTrustPolicyFor({ claims: { ...claims, aud: [] }, accountId: '1', roleName: 'r' })).toEqual({ problem: expect.stringContaining('no "aud"') });
  });
});

describe('CAM trust policy advice (Tencent roles)', () => {
  it('names the provider in the owner account and pins issuer, audience and subject', () => {
    const advice = camTrustPolicyFor({
      claims: { ...claims, aud: 'sts.cloud.tencent.com' },
      accountId: '100012345678',
      roleName: 'cos-reader',
      providerId: 'eks-prod',
    });
    if ('problem' in advice) throw new Error(advice.problem);
    expect(advice.trustPolicy).toEqual({
      version: '2.0',
      statement: [
        {
          action: 'name/sts:AssumeRoleWithWebIdentity',
          effect: 'allow',
          principal: { federated: ['qcs::cam::uin/100012345678:oidc-provider/eks-prod'] },
          condition: {
            string_equal: { 'oidc:iss': [claims.iss], 'oidc:aud': ['sts.cloud.tencent.com'], 'oidc:sub': ['system:serviceaccount:apps:web'] },
          },
        },
      ],
    });
    const text = formatOtherCloudTrustText(advice);
    expect(text).toContain(
      `tccli cam CreateOIDCConfig --Name eks-prod --IdentityUrl ${claims.iss} --ClientId '["sts.cloud.tencent.com"]' --IdentityKey "$IDENTITY_KEY"`,
    );
    expect(text).toContain('https://oidc.example.com/cluster-1/.well-known/openid-configuration');
  });
});
