import { describe, expect, it } from 'vitest';
import type { AwsRoleConfig } from '../../src/config/config.js';
import { type LoadInputs, loadConfig } from '../../src/config/load.js';
import { CrosscredError } from '../../src/core/errors.js';

/** The configuration of role chains, session policies and session templates (issue #18). */

const HUB = 'arn:aws:iam::111122223333:role/hub';
const TARGET = 'arn:aws:iam::444455556666:role/deploy';
const POLICY = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] };

function load(role: Record<string, unknown>, format: 'json' | 'yaml' = 'json') {
  const text = format === 'json' ? JSON.stringify({ roles: [{ roleArn: HUB, tokenFile: '/t/token', region: 'us-east-1', ...role }] }) : String(role['yaml']);
  const inputs: LoadInputs = {
    flags: { config: '/etc/crosscred/config' },
    env: {},
    hostname: 'node-1',
    readText: (path) => {
      if (path !== '/etc/crosscred/config') throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return text;
    },
  };
  return loadConfig(inputs);
}

function roleOf(role: Record<string, unknown>): AwsRoleConfig {
  return load(role).roles[0] as AwsRoleConfig;
}

function configError(role: Record<string, unknown>): string {
  try {
    load(role);
  } catch (err) {
    expect(err).toBeInstanceOf(CrosscredError);
    expect((err as CrosscredError).code).toBe('CROSSCRED_ERR_CONFIG_INVALID');
    return (err as CrosscredError).message;
  }
  throw new Error('expected CROSSCRED_ERR_CONFIG_INVALID, but the configuration loaded');
}

describe('a chain in the config file', () => {
  it('is read hop by hop, with the target account and the last hop naming the served role', () => {
    const role = roleOf({
      chain: [
        { roleArn: TARGET, externalId: 'ext-123', durationSeconds: 3600, tags: { team: 'payments', ns: '{namespace}' }, transitiveTagKeys: ['ns'] },
        { roleArn: 'arn:aws:iam::777788889999:role/path/reader', policyArns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] },
      ],
    });
    expect(role.name).toBe('reader');
    expect(role.roleArn).toBe(HUB);
    expect(role.chain).toEqual([
      {
        roleArn: TARGET,
        accountId: '444455556666',
        externalId: 'ext-123',
        durationSeconds: 3600,
        tags: [
          { key: 'team', value: 'payments' },
          { key: 'ns', value: '{namespace}' },
        ],
        transitiveTagKeys: ['ns'],
      },
      { roleArn: 'arn:aws:iam::777788889999:role/path/reader', accountId: '777788889999', policyArns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] },
    ]);
  });

  it('reads the same chain from YAML, with a policy written as YAML sent as compact JSON', () => {
    const yaml = `roles:
  - roleArn: ${HUB}
    tokenFile: /t/token
    region: us-east-1
    policy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Action: s3:GetObject
          Resource: "*"
    chain:
      - roleArn: ${TARGET}
        externalId: ext-123
`;
    const role = load({ yaml }, 'yaml').roles[0] as AwsRoleConfig;
    expect(role.policy).toBe(JSON.stringify(POLICY));
    expect(role.chain?.[0]?.externalId).toBe('ext-123');
  });

  it('refuses a chained DurationSeconds above one hour as a configuration error that says why', () => {
    const words = configError({ chain: [{ roleArn: TARGET, durationSeconds: 7200 }] });
    expect(words).toContain('roles[0].chain[0].durationSeconds');
    expect(words).toMatch(/caps a chained session .* at one hour/);
    expect(configError({ chain: [{ roleArn: TARGET, durationSeconds: 600 }] })).toMatch(/from 900 to 3600/);
  });

  it('refuses what STS would refuse, naming each key, and never quotes a policy', () => {
    const secretish = 'x'.repeat(2100);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ chain: [{ roleArn: 'arn:aws:iam::4444:role/x' }] }, /chain\[0\]\.roleArn/],
      [{ chain: [{ roleArn: 'arn:aws-cn:iam::444455556666:role/x' }] }, /cannot cross partitions/],
      [{ chain: [{ roleArn: TARGET, externalId: 'a' }] }, /chain\[0\]\.externalId/],
      [{ chain: [{ roleArn: TARGET, externalId: 'has space' }] }, /chain\[0\]\.externalId/],
      [{ chain: [{ roleArn: TARGET, policy: `{"Statement":"${secretish}"}` }] }, /chain\[0\]\.policy .* above STS's 2048/],
      [{ chain: [{ roleArn: TARGET, policy: 'not json' }] }, /chain\[0\]\.policy .*not JSON/],
      [{ policy: '[1,2]' }, /roles\[0\]\.policy .*not a JSON object/],
      [{ policyArns: Array.from({ length: 11 }, (_, i) => `arn:aws:iam::aws:policy/P${i}`) }, /above STS's 10/],
      [{ policyArns: [TARGET] }, /not a managed policy ARN/],
      [{ chain: [{ roleArn: TARGET, tags: { 'aws:x': 'v' } }] }, /must not start with "aws:"/],
      [{ chain: [{ roleArn: TARGET, tags: { Team: 'a', team: 'b' } }] }, /case-insensitive/],
      [{ chain: [{ roleArn: TARGET, tags: { t: 'a#b' } }] }, /chain\[0\]\.tags\.t/],
      [{ chain: [{ roleArn: TARGET, tags: { t: '{nope}' } }] }, /names \{nope\}/],
      [{ chain: [{ roleArn: TARGET, tags: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) }] }, /at most 50/],
      [{ chain: [{ roleArn: TARGET, tags: { a: 'b' }, transitiveTagKeys: ['c'] }] }, /not a key of this hop's tags/],
      [{ chain: [{ roleArn: TARGET, sessionName: 'has space' }] }, /chain\[0\]\.sessionName/],
      [{ chain: Array.from({ length: 6 }, () => ({ roleArn: TARGET })) }, /at most 5/],
      [{ chain: [] }, /roles\.0\.chain: Too small: expected array to have >=1 items/],
      [{ policy: '{"Statement":"\u2603"}' }, /outside U\+0020–U\+00FF/],
      [{ policy: `{"Statement":"${'s'.repeat(2000)}"}`, policyArns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] }, /together, above STS's 2048/],
      [
        {
          chain: [
            { roleArn: TARGET, tags: { team: 'a' }, transitiveTagKeys: ['team'] },
            { roleArn: TARGET, tags: { Team: 'b' } },
          ],
        },
        /chain\[1\]\.tags .*transitive tag of hop 1/,
      ],
    ];
    for (const [role, pattern] of cases) {
      const words = configError(role);
      expect(words, JSON.stringify(role).slice(0, 100)).toMatch(pattern);
      expect(words).not.toContain(secretish);
      expect(words).not.toContain('Statement');
    }
  });

  it("refuses a chain or session policy on another cloud's role", () => {
    const words = configError({
      cloud: 'alibaba',
      roleArn: 'acs:ram::1234567890123456:role/oss-reader',
      oidcProviderArn: 'acs:ram::1234567890123456:oidc-provider/eks',
      chain: [{ roleArn: TARGET }],
      policy: POLICY,
    });
    expect(words).toContain('roles[0].chain');
    expect(words).toContain('roles[0].policy');
    expect(words).toMatch(/AWS STS's/);
  });
});

describe('session-name templates', () => {
  it('accepts a template over the token identity, and keeps it as written', () => {
    expect(roleOf({ sessionName: '{namespace}.{pod}' }).sessionName).toBe('{namespace}.{pod}');
    expect(roleOf({ sessionName: 'vm-{account}-{instance}' }).sessionName).toBe('vm-{account}-{instance}');
  });

  it('refuses an unknown variable, a stray brace and characters STS refuses outside the variables', () => {
    expect(configError({ sessionName: '{namespce}' })).toMatch(/names \{namespce\}, which is not one of/);
    expect(configError({ sessionName: '{namespace}}' })).toMatch(/brace outside/);
    expect(configError({ sessionName: '{namespace} {pod}' })).toMatch(/characters outside/);
  });
});
