import { describe, expect, it } from 'vitest';
import type { AlibabaRoleConfig, TencentRoleConfig } from '../../src/config/config.js';
import { type LoadInputs, loadConfig, type ServeFlags } from '../../src/config/load.js';
import { CrosscredError } from '../../src/core/errors.js';

/** Roles in Alibaba Cloud and Tencent Cloud: `cloud`, each cloud's own variables, and their checks (issue #13). */

const RAM_ROLE = 'acs:ram::1234567890123456:role/oss-reader';
const RAM_PROVIDER = 'acs:ram::1234567890123456:oidc-provider/eks-prod';
const CAM_ROLE = 'qcs::cam::uin/100012345678:roleName/cos-reader';

/** What an ACK pod with RRSA gets. */
const RRSA_ENV = {
  ALIBABA_CLOUD_ROLE_ARN: RAM_ROLE,
  ALIBABA_CLOUD_OIDC_PROVIDER_ARN: RAM_PROVIDER,
  ALIBABA_CLOUD_OIDC_TOKEN_FILE: '/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token',
};

/** What a TKE pod with pod identity gets. */
const TKE_ENV = {
  TKE_ROLE_ARN: CAM_ROLE,
  TKE_PROVIDER_ID: 'tke-prod',
  TKE_WEB_IDENTITY_TOKEN_FILE: '/var/run/secrets/tke.cloud.tencent.com/serviceaccount/token',
  TKE_REGION: 'ap-guangzhou',
};

function load(options: { flags?: ServeFlags; env?: Record<string, string | undefined>; files?: Record<string, string> } = {}) {
  const files = options.files ?? {};
  const inputs: LoadInputs = {
    flags: options.flags ?? {},
    env: options.env ?? {},
    hostname: 'node-1',
    readText: (path) => {
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return text;
    },
  };
  return loadConfig(inputs);
}

function configError(options: Parameters<typeof load>[0]): string {
  try {
    load(options);
  } catch (err) {
    expect(err).toBeInstanceOf(CrosscredError);
    expect((err as CrosscredError).code).toBe('CROSSCRED_ERR_CONFIG_INVALID');
    return (err as CrosscredError).message;
  }
  throw new Error('expected CROSSCRED_ERR_CONFIG_INVALID, but the configuration loaded');
}

describe('an Alibaba role', () => {
  it('is configured by the RRSA variables alone once the cloud is alibaba', () => {
    const config = load({ env: { ...RRSA_ENV, CROSSCRED_CLOUD: 'alibaba', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_STS: 'https://sts.example' } });
    const role = config.roles[0] as AlibabaRoleConfig;
    expect(role).toEqual({
      cloud: 'alibaba',
      name: 'oss-reader',
      roleArn: RAM_ROLE,
      accountId: '1234567890123456',
      oidcProviderArn: RAM_PROVIDER,
      // AWS_REGION and AWS_ENDPOINT_URL_STS are AWS's: an Alibaba role uses the global endpoint.
      region: '',
      vpcEndpoint: false,
      sessionName: 'crosscred-node-1',
      token: {
        source: { kind: 'file', path: RRSA_ENV.ALIBABA_CLOUD_OIDC_TOKEN_FILE, platform: 'alibaba-ack' },
        reason: 'ALIBABA_CLOUD_OIDC_TOKEN_FILE is set (ACK RRSA)',
        notes: [],
      },
    });
  });

  it('reads the STS region, the VPC endpoint and the session name from Alibaba variables', () => {
    const env = {
      ...RRSA_ENV,
      ALIBABA_CLOUD_STS_REGION: 'cn-hangzhou',
      ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED: 'true',
      ALIBABA_CLOUD_ROLE_SESSION_NAME: 'app.web',
    };
    const role = load({ flags: { cloud: 'alibaba' }, env }).roles[0] as AlibabaRoleConfig;
    expect(role).toMatchObject({ region: 'cn-hangzhou', vpcEndpoint: true, sessionName: 'app.web' });
  });

  it('prefers its own platform token file when an AWS one is set too', () => {
    const env = { ...RRSA_ENV, AWS_WEB_IDENTITY_TOKEN_FILE: '/var/run/aws-token' };
    const role = load({ flags: { cloud: 'alibaba' }, env }).roles[0]!;
    expect(role.token.source).toEqual({ kind: 'file', path: RRSA_ENV.ALIBABA_CLOUD_OIDC_TOKEN_FILE, platform: 'alibaba-ack' });
    expect(role.token.notes).toEqual(['AWS_WEB_IDENTITY_TOKEN_FILE is set too, but not used.']);
  });

  it('asks a Kubernetes TokenRequest for the Alibaba STS audience by default', () => {
    const env = {
      CROSSCRED_CLOUD: 'alibaba',
      ALIBABA_CLOUD_ROLE_ARN: RAM_ROLE,
      ALIBABA_CLOUD_OIDC_PROVIDER_ARN: RAM_PROVIDER,
      KUBERNETES_SERVICE_HOST: '10.0.0.1',
      KUBERNETES_SERVICE_PORT: '443',
    };
    const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
    // The pod's own ServiceAccount token names the account; its signature is the API server's business.
    const claims = Buffer.from(JSON.stringify({ sub: 'system:serviceaccount:apps:web' })).toString('base64url');
    const files = { [`${sa}/namespace`]: 'apps', [`${sa}/token`]: `e30.${claims}.c2ln`, [`${sa}/ca.crt`]: '-----BEGIN CERTIFICATE-----\n' };
    const role = load({ env, files }).roles[0]!;
    expect(role.token.source).toMatchObject({ kind: 'kubernetes', audience: 'sts.aliyuncs.com' });
  });

  it('refuses a missing or foreign OIDC provider, a bad region, a VPC endpoint without a region, and AWS-only session characters', () => {
    expect(configError({ flags: { cloud: 'alibaba' }, env: { ...RRSA_ENV, ALIBABA_CLOUD_OIDC_PROVIDER_ARN: undefined } })).toContain(
      'an Alibaba role needs the RAM OIDC provider: set ALIBABA_CLOUD_OIDC_PROVIDER_ARN',
    );
    expect(configError({ flags: { cloud: 'alibaba', 'oidc-provider-arn': 'acs:ram::999:oidc-provider/other' }, env: RRSA_ENV })).toContain(
      'oidcProviderArn (--oidc-provider-arn): is in account 999, the role in account 1234567890123456',
    );
    expect(configError({ flags: { cloud: 'alibaba', 'oidc-provider-arn': 'arn:aws:iam::1:oidc-provider/x' }, env: RRSA_ENV })).toContain(
      'is not a RAM OIDC provider ARN',
    );
    expect(configError({ flags: { cloud: 'alibaba', region: 'Hangzhou!' }, env: RRSA_ENV })).toContain('is not an Alibaba Cloud region id');
    expect(configError({ flags: { cloud: 'alibaba', 'vpc-endpoint': true }, env: RRSA_ENV })).toContain('needs a region: the VPC endpoints are regional');
    expect(configError({ flags: { cloud: 'alibaba' }, env: { ...RRSA_ENV, ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED: 'yes' } })).toContain(
      'vpcEndpoint (env ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED): "yes" must be true or false',
    );
    expect(configError({ flags: { cloud: 'alibaba', 'role-session-name': 'a+b' }, env: RRSA_ENV })).toContain('(Alibaba STS)');
    expect(configError({ flags: { cloud: 'alibaba', 'role-arn': 'arn:aws:iam::111122223333:role/app' }, env: RRSA_ENV })).toContain('is not a RAM role ARN');
  });

  it('may turn ECS metadata off on a loopback listener: the credentials URI is left (the webhook sidecar)', () => {
    const config = load({ flags: { cloud: 'alibaba', 'disable-imds': true }, env: RRSA_ENV });
    expect(config.imdsEnabled).toBe(false);
    expect(configError({ flags: { cloud: 'tencent', 'disable-imds': true }, env: TKE_ENV })).toContain(
      'disable-imds (--disable-imds): leaves nothing to serve',
    );
  });

  it('refuses a Tencent setting given for it', () => {
    expect(configError({ flags: { cloud: 'alibaba', 'provider-id': 'tke-prod' }, env: RRSA_ENV })).toContain(
      'providerId (--provider-id): is for a Tencent role, and this role is an Alibaba role (cloud: alibaba)',
    );
  });
});

describe('a Tencent role', () => {
  it('is configured by the TKE variables alone once the cloud is tencent', () => {
    const role = load({ flags: { cloud: 'tencent' }, env: { ...TKE_ENV, AWS_ROLE_ARN: 'arn:aws:iam::111122223333:role/app' } }).roles[0] as TencentRoleConfig;
    expect(role).toMatchObject({
      cloud: 'tencent',
      name: 'cos-reader',
      roleArn: CAM_ROLE,
      accountId: '100012345678',
      providerId: 'tke-prod',
      region: 'ap-guangzhou',
      token: { source: { kind: 'file', path: TKE_ENV.TKE_WEB_IDENTITY_TOKEN_FILE, platform: 'tencent-tke' } },
    });
  });

  it('needs a provider and a region, and refuses Alibaba settings', () => {
    expect(configError({ flags: { cloud: 'tencent' }, env: { ...TKE_ENV, TKE_REGION: undefined } })).toContain('a Tencent role needs a region');
    expect(configError({ flags: { cloud: 'tencent' }, env: { ...TKE_ENV, TKE_PROVIDER_ID: undefined } })).toContain(
      'a Tencent role needs the CAM OIDC identity provider: set TKE_PROVIDER_ID',
    );
    expect(configError({ flags: { cloud: 'tencent', 'provider-id': 'has space' }, env: TKE_ENV })).toContain('is not a CAM identity provider name');
    expect(configError({ flags: { cloud: 'tencent', 'vpc-endpoint': true }, env: TKE_ENV })).toContain('vpcEndpoint (--vpc-endpoint): is for an Alibaba role');
    expect(configError({ flags: { cloud: 'tencent', 'role-arn': RAM_ROLE }, env: TKE_ENV })).toContain('is not a CAM role ARN');
  });
});

describe('an AWS role (the default)', () => {
  it('still ignores the other clouds’ variables, and notes them', () => {
    const env = { ...RRSA_ENV, ...TKE_ENV, AWS_ROLE_ARN: 'arn:aws:iam::111122223333:role/app', AWS_WEB_IDENTITY_TOKEN_FILE: '/var/run/aws-token' };
    const role = load({ env }).roles[0]!;
    expect(role).toMatchObject({ cloud: 'aws', roleArn: 'arn:aws:iam::111122223333:role/app', region: 'us-east-1' });
    expect(role.token.source).toMatchObject({ path: '/var/run/aws-token' });
    expect(role.token.notes.join('\n')).toContain('ALIBABA_CLOUD_ROLE_ARN is set');
    expect(role.token.notes.join('\n')).toContain('TKE_REGION is set');
  });

  it('says which variable names the role of each cloud when none is set', () => {
    expect(configError({ env: {} })).toContain('set AWS_ROLE_ARN, --role-arn');
    expect(configError({ flags: { cloud: 'alibaba' }, env: {} })).toContain('set ALIBABA_CLOUD_ROLE_ARN, --role-arn');
    expect(configError({ flags: { cloud: 'tencent' }, env: {} })).toContain('set TKE_ROLE_ARN, --role-arn');
  });

  it('refuses an unknown cloud and an Alibaba setting given for it', () => {
    expect(configError({ flags: { cloud: 'gcp', 'role-arn': 'arn:aws:iam::111122223333:role/app', 'token-file': '/t' } })).toContain(
      'cloud (--cloud): "gcp" is not one of aws, alibaba, tencent',
    );
    expect(configError({ flags: { 'oidc-provider-arn': RAM_PROVIDER, 'role-arn': 'arn:aws:iam::111122223333:role/app', 'token-file': '/t' } })).toContain(
      'is for an Alibaba role, and this role is an AWS role',
    );
  });
});

describe('an AWS workload going out (the aws-outbound source)', () => {
  it("asks GetWebIdentityToken for the role's cloud's audience, in the AWS region of the host", () => {
    const flags: ServeFlags = { cloud: 'alibaba', 'token-source': 'aws-outbound', 'aws-outbound-signing-algorithm': 'ES384' };
    const role = load({ flags, env: { ...RRSA_ENV, ALIBABA_CLOUD_OIDC_TOKEN_FILE: undefined, AWS_REGION: 'eu-west-1' } }).roles[0]!;
    expect(role.token.source).toEqual({
      kind: 'aws-outbound',
      audience: 'sts.aliyuncs.com',
      signingAlgorithm: 'ES384',
      durationSeconds: 300,
      region: 'eu-west-1',
    });
    expect(role.token.reason).toContain('GetWebIdentityToken in eu-west-1');
  });

  it('is never chosen by auto, needs a region, and checks its settings', () => {
    const env = { ...TKE_ENV, TKE_WEB_IDENTITY_TOKEN_FILE: undefined };
    expect(configError({ flags: { cloud: 'tencent' }, env: { ...env, AWS_REGION: 'eu-west-1' } })).toContain('found no web-identity token');
    expect(configError({ flags: { cloud: 'tencent', 'token-source': 'aws-outbound' }, env })).toContain('no AWS STS region is set');
    const bad: ServeFlags = {
      cloud: 'tencent',
      'token-source': 'aws-outbound',
      'aws-outbound-duration-seconds': '30',
      'aws-outbound-signing-algorithm': 'HS256',
    };
    const message = configError({ flags: bad, env: { ...env, AWS_REGION: 'eu-west-1' } });
    expect(message).toContain('aws-outbound-signing-algorithm (--aws-outbound-signing-algorithm): "HS256" is not one of RS256, ES384');
    expect(message).toContain('aws-outbound-duration-seconds (--aws-outbound-duration-seconds): must be a whole number of seconds from 60 to 3600');
  });
});

describe('a config file with roles in three clouds', () => {
  const yaml = `
tokenFile: /var/run/token
oidcProviderArn: ${RAM_PROVIDER}
region: eu-west-1
roles:
  - roleArn: arn:aws:iam::111122223333:role/app
  - cloud: alibaba
    roleArn: ${RAM_ROLE}
    region: cn-hangzhou
  - cloud: tencent
    roleArn: ${CAM_ROLE}
    providerId: tke-prod
    region: ap-guangzhou
listen: ["127.0.0.1:8170=app", "127.0.0.1:8172=oss-reader", "127.0.0.1:8173=cos-reader"]
`;

  it('gives each role its cloud; top-level settings of one cloud do not trouble the others', () => {
    const config = load({ flags: { config: '/etc/crosscred.yaml' }, files: { '/etc/crosscred.yaml': yaml } });
    expect(config.roles.map((r) => [r.name, r.cloud, r.region])).toEqual([
      ['app', 'aws', 'eu-west-1'],
      ['oss-reader', 'alibaba', 'cn-hangzhou'],
      ['cos-reader', 'tencent', 'ap-guangzhou'],
    ]);
    expect((config.roles[1] as AlibabaRoleConfig).oidcProviderArn).toBe(RAM_PROVIDER);
  });

  it('refuses a role key of another cloud on the role itself', () => {
    const bad = yaml.replace('providerId: tke-prod', 'providerId: tke-prod\n    oidcProviderArn: x');
    expect(configError({ flags: { config: '/etc/crosscred.yaml' }, files: { '/etc/crosscred.yaml': bad } })).toContain(
      'roles[2].oidcProviderArn (config file /etc/crosscred.yaml roles[2]): is for an Alibaba role, and this role is a Tencent role',
    );
  });
});
