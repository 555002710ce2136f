import { describe, expect, it } from 'vitest';
import { type DetectionInputs, detectTokenSource, type InClusterFacts } from '../../src/config/detect-token-source.js';

const IN_CLUSTER: InClusterFacts = {
  apiServer: 'https://10.96.0.1:443',
  caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
  serviceAccountTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
  namespace: 'payments',
  serviceAccount: 'api',
};

function detect(env: Record<string, string>, overrides: Partial<DetectionInputs> = {}) {
  return detectTokenSource({
    kind: { value: 'auto', origin: 'the default (auto)' },
    commandTimeoutMs: 10_000,
    audience: 'sts.amazonaws.com',
    expirationSeconds: 3600,
    env,
    inCluster: () => IN_CLUSTER,
    ...overrides,
  });
}

function sourceOf(result: ReturnType<typeof detect>) {
  if ('problem' in result) throw new Error(result.problem);
  return result.source;
}

const KUBE = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };

describe('auto-detection: each environment picks its source', () => {
  it.each([
    [
      'EKS IRSA',
      { ...KUBE, AWS_ROLE_ARN: 'arn:aws:iam::1:role/x', AWS_WEB_IDENTITY_TOKEN_FILE: '/var/run/secrets/eks.amazonaws.com/serviceaccount/token' },
      { kind: 'file', path: '/var/run/secrets/eks.amazonaws.com/serviceaccount/token', platform: 'aws' },
    ],
    [
      'ACK RRSA',
      {
        ...KUBE,
        ALIBABA_CLOUD_ROLE_ARN: 'acs:ram::1:role/x',
        ALIBABA_CLOUD_OIDC_PROVIDER_ARN: 'acs:ram::1:oidc-provider/ack-rrsa-c1',
        ALIBABA_CLOUD_OIDC_TOKEN_FILE: '/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token',
      },
      { kind: 'file', path: '/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token', platform: 'alibaba-ack' },
    ],
    [
      'TKE pod identity',
      {
        ...KUBE,
        TKE_REGION: 'ap-guangzhou',
        TKE_PROVIDER_ID: 'p',
        TKE_ROLE_ARN: 'qcs::cam::uin/1:roleName/x',
        TKE_WEB_IDENTITY_TOKEN_FILE: '/var/run/secrets/tke.cloud.tencent.com/serviceaccount/token',
      },
      { kind: 'file', path: '/var/run/secrets/tke.cloud.tencent.com/serviceaccount/token', platform: 'tencent-tke' },
    ],
    ['a pod with no AWS token file', KUBE, { kind: 'kubernetes', ...IN_CLUSTER, audience: 'sts.amazonaws.com', expirationSeconds: 3600 }],
  ] as const)('%s', (_name, env, expected) => {
    expect(sourceOf(detect(env))).toEqual(expected);
  });

  it('prefers a token command, then a configured file, over every platform variable', () => {
    const env = { ...KUBE, AWS_WEB_IDENTITY_TOKEN_FILE: '/a', ALIBABA_CLOUD_OIDC_TOKEN_FILE: '/b' };
    expect(
      sourceOf(detect(env, { tokenCommand: { value: ['/bin/get-token'], origin: '--token-command' }, tokenFile: { value: '/c', origin: '--token-file' } })),
    ).toEqual({ kind: 'exec', argv: ['/bin/get-token'], timeoutMs: 10_000 });
    expect(sourceOf(detect(env, { tokenFile: { value: '/c', origin: '--token-file' } }))).toMatchObject({ kind: 'file', path: '/c', platform: 'configured' });
  });

  it('takes AWS_WEB_IDENTITY_TOKEN_FILE over ACK over TKE, and says which were set but not used', () => {
    const result = detect({ AWS_WEB_IDENTITY_TOKEN_FILE: '/a', ALIBABA_CLOUD_OIDC_TOKEN_FILE: '/b', TKE_WEB_IDENTITY_TOKEN_FILE: '/c' });
    expect(sourceOf(result)).toMatchObject({ path: '/a' });
    expect('notes' in result && result.notes).toContain('ALIBABA_CLOUD_OIDC_TOKEN_FILE and TKE_WEB_IDENTITY_TOKEN_FILE are set too, but not used.');
    expect(sourceOf(detect({ ALIBABA_CLOUD_OIDC_TOKEN_FILE: '/b', TKE_WEB_IDENTITY_TOKEN_FILE: '/c' }))).toMatchObject({ path: '/b' });
  });

  it('explains the Alibaba and Tencent role variables and never takes them for the AWS role', () => {
    const result = detect({
      ALIBABA_CLOUD_OIDC_TOKEN_FILE: '/b',
      ALIBABA_CLOUD_ROLE_ARN: 'acs:ram::1:role/x',
      ALIBABA_CLOUD_OIDC_PROVIDER_ARN: 'acs:ram::1:oidc-provider/p',
      TKE_ROLE_ARN: 'qcs::cam::uin/1:roleName/x',
    });
    if ('problem' in result) throw new Error(result.problem);
    expect(result.reason).toBe('ALIBABA_CLOUD_OIDC_TOKEN_FILE is set (ACK RRSA)');
    expect(result.notes.join('\n')).toMatch(/ALIBABA_CLOUD_ROLE_ARN is set: the Alibaba RAM role .* never assumes it/);
    expect(result.notes.join('\n')).toMatch(/ALIBABA_CLOUD_OIDC_PROVIDER_ARN is set: .*IAM OIDC provider/);
    expect(result.notes.join('\n')).toMatch(/TKE_ROLE_ARN is set: the Tencent CAM role/);
  });

  it('binds a requested token to the pod when POD_NAME and POD_UID are known, with the configured audience', () => {
    const source = sourceOf(detect(KUBE, { pod: { name: 'api-7d9', uid: 'c0ffee' }, audience: 'sts.amazonaws.com.cn', expirationSeconds: 7200 }));
    expect(source).toMatchObject({ kind: 'kubernetes', pod: { name: 'api-7d9', uid: 'c0ffee' }, audience: 'sts.amazonaws.com.cn', expirationSeconds: 7200 });
  });

  it('lists everything it looked for when nothing applies', () => {
    const result = detect({});
    expect(result).toHaveProperty('problem');
    const problem = (result as { problem: string }).problem;
    for (const looked of [
      '--token-command',
      '--token-file',
      'AWS_WEB_IDENTITY_TOKEN_FILE',
      'ALIBABA_CLOUD_OIDC_TOKEN_FILE',
      'TKE_WEB_IDENTITY_TOKEN_FILE',
      'Kubernetes TokenRequest',
    ])
      expect(problem).toContain(looked);
  });

  it('says what is missing in a pod without a mounted ServiceAccount', () => {
    const result = detect(KUBE, { inCluster: () => ({ missing: ['/var/run/secrets/kubernetes.io/serviceaccount/token'] }) });
    expect((result as { problem: string }).problem).toContain('/var/run/secrets/kubernetes.io/serviceaccount/token');
  });
});

describe('an explicit choice always wins', () => {
  it('takes kubernetes even when a token file variable is set', () => {
    expect(sourceOf(detect({ ...KUBE, AWS_WEB_IDENTITY_TOKEN_FILE: '/a' }, { kind: { value: 'kubernetes', origin: '--token-source' } }))).toMatchObject({
      kind: 'kubernetes',
    });
  });

  it('takes a file even in a pod, and exec only with a command', () => {
    expect(sourceOf(detect({ ...KUBE, TKE_WEB_IDENTITY_TOKEN_FILE: '/t' }, { kind: { value: 'file', origin: '--token-source' } }))).toMatchObject({
      kind: 'file',
      path: '/t',
    });
    expect(detect({ AWS_WEB_IDENTITY_TOKEN_FILE: '/a' }, { kind: { value: 'exec', origin: '--token-source' } })).toEqual({
      problem: '--token-source chooses exec, but no --token-command is given',
    });
    expect((detect({}, { kind: { value: 'kubernetes', origin: '--token-source' } }) as { problem: string }).problem).toMatch(/not a pod/);
    expect((detect(KUBE, { kind: { value: 'file', origin: '--token-source' } }) as { problem: string }).problem).toMatch(/no token file is named/);
  });
});

describe('VMs attested to crosscred issuer', () => {
  const issuer = { value: { url: 'https://issuer.example.com', audience: 'sts.amazonaws.com' }, origin: '--issuer-url' };

  it('is the last resort of auto: only with --issuer-url and nothing else found, the cloud detected at the first fetch', () => {
    expect(sourceOf(detect({}, { issuer }))).toEqual({ kind: 'vm-issuer', cloud: 'detect', issuer: issuer.value, alibabaAttestation: 'ecs-identity' });
    // A token file or a pod still wins over the issuer.
    expect(sourceOf(detect({ AWS_WEB_IDENTITY_TOKEN_FILE: '/t' }, { issuer })).kind).toBe('file');
    expect(sourceOf(detect(KUBE, { issuer })).kind).toBe('kubernetes');
    // Without it, nothing is found, and the problem names the issuer among what was looked for.
    const none = detect({});
    expect('problem' in none && none.problem).toContain('--issuer-url');
  });

  it('takes an explicit alibaba-ecs or tencent-cvm, which needs --issuer-url', () => {
    expect(sourceOf(detect({}, { issuer, kind: { value: 'tencent-cvm', origin: '--token-source' } }))).toMatchObject({
      kind: 'vm-issuer',
      cloud: 'tencent-cvm',
    });
    expect(sourceOf(detect({}, { issuer, alibabaAttestation: 'ram-role', kind: { value: 'alibaba-ecs', origin: '--token-source' } }))).toMatchObject({
      kind: 'vm-issuer',
      cloud: 'alibaba-ecs',
      alibabaAttestation: 'ram-role',
    });
    const missing = detect({}, { kind: { value: 'alibaba-ecs', origin: '--token-source' } });
    expect('problem' in missing && missing.problem).toBe('--token-source chooses alibaba-ecs, but no --issuer-url names the crosscred issuer to attest to');
  });
});
