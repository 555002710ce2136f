import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { isCrosscredError } from '../../src/core/errors.js';
import { issuerUrlProblem } from '../../src/core/url-checks.js';
import { loadIssuerConfig, parseIssuerConfigText } from '../../src/issuer/issuer-config.js';
import { baseConfig } from '../support/issuer-fixtures.js';

const KEYS = [{ file: 'keys/a.pem', active: true }, { file: '/etc/crosscred/b.pem' }];

function problemsOf(object: Record<string, unknown>): string[] {
  const result = parseIssuerConfigText(stringify(object), '/etc/crosscred/issuer.yaml');
  return 'problems' in result ? result.problems : [];
}

describe('issuer config', () => {
  it('parses a complete config, resolves relative paths against the file, applies defaults, freezes it', () => {
    const result = parseIssuerConfigText(stringify(baseConfig('https://issuer.example.com', KEYS, { listen: '127.0.0.1:8470' })), '/etc/crosscred/issuer.yaml');
    if ('problems' in result) throw new Error(result.problems.join('\n'));
    const c = result.config;
    expect(c.publicUrl).toBe('https://issuer.example.com');
    expect(c.tokenEndpointUrl).toBe('https://issuer.example.com/token');
    expect(c.keys).toEqual([
      { file: '/etc/crosscred/keys/a.pem', active: true },
      { file: '/etc/crosscred/b.pem', active: false },
    ]);
    expect(c.tokenLifetimeSeconds).toBe(3600);
    expect(c.audiences).toEqual(['sts.amazonaws.com', 'crosscred-test']);
    expect(c.attestors.alibabaRamRole).toEqual({ extraStsEndpoints: [] });
    expect(c.policy.alibabaEcsIdentity?.sessionTags).toContainEqual({ key: 'zone', from: 'attribute:zone-id' });
    expect(Object.isFrozen(c.policy.alibabaEcsIdentity?.accounts)).toBe(true);
  });

  it('reads YAML and JSON files; a missing file is CONFIG_FILE_UNREADABLE', () => {
    const object = baseConfig('https://issuer.example.com', KEYS, { listen: '127.0.0.1:8470' });
    expect(loadIssuerConfig('/x.json', () => JSON.stringify(object)).publicUrl).toBe('https://issuer.example.com');
    try {
      loadIssuerConfig('/nonexistent/issuer.yaml');
      throw new Error('expected a refusal');
    } catch (err) {
      expect(isCrosscredError(err, 'CONFIG_FILE_UNREADABLE')).toBe(true);
    }
    try {
      loadIssuerConfig('/x.yaml', () => 'keys: [');
      throw new Error('expected a refusal');
    } catch (err) {
      expect(isCrosscredError(err, 'CONFIG_INVALID')).toBe(true);
    }
  });

  it('reports every problem at once', () => {
    const problems = problemsOf(
      baseConfig('http://issuer.example.com:8443/', [{ file: 'a.pem' }], {
        listen: '0.0.0.0:8443',
        tokenLifetimeSeconds: 60,
        rateLimit: { burst: 0 },
        audiences: ['has space'],
        policy: {
          alibabaEcsIdentity: { accounts: ['*'], regions: [], sessionTags: { 'aws:x': 'region', ok: 'password' }, transitiveTagKeys: ['nope'] },
          alibabaRamRole: { accounts: ['123'], roles: ['r'], instanceIds: ['*'], regions: ['cn-hangzhou'] },
        },
      }),
    );
    const text = problems.join('\n');
    for (const fragment of [
      'publicUrl',
      'listen: 0.0.0.0:8443 is not loopback',
      'exactly one key must have active',
      'tokenLifetimeSeconds',
      'rateLimit.burst',
      'audiences[0]',
      '"*" is not accepted',
      'policy.alibabaEcsIdentity.regions: missing or empty',
      'policy.alibabaEcsIdentity.instanceIds: missing or empty',
      'must not start with "aws:"',
      'sessionTags.ok',
      'transitiveTagKeys',
      'policy.alibabaRamRole.regions',
      'policy.tencentCamRole: missing',
    ]) {
      expect(text).toContain(fragment);
    }
  });

  it('bounds the token lifetime to 5 minutes - 12 hours', () => {
    const at = (s: number) => problemsOf(baseConfig('https://i.example', KEYS, { listen: '127.0.0.1:1', tokenLifetimeSeconds: s }));
    expect(at(300)).toEqual([]);
    expect(at(43_200)).toEqual([]);
    expect(at(299).join()).toContain('tokenLifetimeSeconds');
    expect(at(43_201).join()).toContain('tokenLifetimeSeconds');
    expect(at(600.5).join()).toContain('whole number');
  });

  it('allows plain HTTP off loopback only with allowPlainHttp or with tls', () => {
    const base = (extra: Record<string, unknown>) => problemsOf(baseConfig('https://i.example', KEYS, { listen: '0.0.0.0:8443', ...extra }));
    expect(base({}).join()).toContain('is not loopback');
    expect(base({ allowPlainHttp: true })).toEqual([]);
    expect(base({ tls: { certFile: 'c.pem', keyFile: 'k.pem' } })).toEqual([]);
  });

  it('needs an attestor and a policy for the same kinds, and refuses unknown settings', () => {
    const object = baseConfig('https://i.example', KEYS, { listen: '127.0.0.1:1' });
    (object['attestors'] as Record<string, unknown>)['tencentCamRole'] = undefined;
    expect(problemsOf(object).join()).toContain('policy.tencentCamRole: attestors.tencentCamRole is not configured');
    expect(problemsOf({ ...object, surprise: 1 }).join()).toContain('surprise');
  });

  it('checks the issuer URL as AWS IAM does', () => {
    expect(issuerUrlProblem('https://issuer.example.com')).toBeUndefined();
    expect(issuerUrlProblem('https://issuer.example.com/tenant-a')).toBeUndefined();
    expect(issuerUrlProblem('http://127.0.0.1:8470')).toBeUndefined();
    expect(issuerUrlProblem('http://issuer.example.com')).toContain('https');
    expect(issuerUrlProblem('https://issuer.example.com:8443')).toContain('port');
    expect(issuerUrlProblem('https://issuer.example.com/?a=b')).toContain('query');
    expect(issuerUrlProblem('https://issuer.example.com/')).toContain('"/"');
    expect(issuerUrlProblem('https://user@issuer.example.com')).toContain('user');
    expect(issuerUrlProblem('https://Issuer.Example.com')).toContain('canonical');
  });
});

describe('issuer config for the role kinds (issue #11 item 8)', () => {
  const withPolicy = (policy: Record<string, unknown>) =>
    problemsOf(
      baseConfig('https://issuer.example.com', KEYS, {
        listen: '127.0.0.1:8470',
        policy: {
          alibabaEcsIdentity: { accounts: ['1335926999564873'], regions: ['cn-hangzhou'], instanceIds: ['i-bp1abc'] },
          alibabaRamRole: { accounts: ['1335926999564873'], roles: ['app-role'] },
          tencentCamRole: { accounts: ['100012345678'], roles: ['4611686018427397919'] },
          ...policy,
        },
      }),
    );

  it('accepts role kinds without instanceIds or with ["*"], and ECS with specific instances', () => {
    expect(withPolicy({})).toEqual([]);
    expect(withPolicy({ tencentCamRole: { accounts: ['100012345678'], roles: ['4611686018427397919'], instanceIds: ['*'] } })).toEqual([]);
  });

  it('refuses a specific instanceIds list for the role kinds, saying why', () => {
    const problems = withPolicy({
      alibabaRamRole: { accounts: ['1335926999564873'], roles: ['app-role'], instanceIds: ['i-bp1abc'] },
      tencentCamRole: { accounts: ['100012345678'], roles: ['4611686018427397919'], instanceIds: ['ins-abc', '*'] },
    });
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^policy\.alibabaRamRole\.instanceIds: .*role session name, which whoever assumes the role chooses/);
    expect(problems[1]).toMatch(/^policy\.tencentCamRole\.instanceIds: .*use alibabaEcsIdentity to allow specific instances/);
  });

  it('refuses an instanceId session tag for the role kinds', () => {
    const problems = withPolicy({ alibabaRamRole: { accounts: ['1335926999564873'], roles: ['app-role'], sessionTags: { instance: 'instanceId' } } });
    expect(problems).toEqual([expect.stringMatching(/^policy\.alibabaRamRole\.sessionTags\.instance: instanceId is not accepted for alibabaRamRole/)]);
    expect(
      withPolicy({ alibabaEcsIdentity: { accounts: ['1335926999564873'], regions: ['*'], instanceIds: ['*'], sessionTags: { i: 'instanceId' } } }),
    ).toEqual([]);
  });
});

describe('issuer config: clientRateLimit (issue #11 item 1)', () => {
  it('defaults to a bounded per-address bucket, and checks its ranges', () => {
    const result = parseIssuerConfigText(stringify(baseConfig('https://issuer.example.com', KEYS, { listen: '127.0.0.1:8470' })), '/etc/crosscred/issuer.yaml');
    if ('problems' in result) throw new Error(result.problems.join('\n'));
    expect(result.config.clientRateLimit).toEqual({ burst: 100, perSecond: 50, maxClients: 10_000 });
    const problems = problemsOf(baseConfig('https://issuer.example.com', KEYS, { clientRateLimit: { burst: 0, perSecond: -1, maxClients: 1e9 } }));
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^clientRateLimit\.burst: must be/),
        expect.stringMatching(/^clientRateLimit\.perSecond: must be/),
        expect.stringMatching(/^clientRateLimit\.maxClients: must be/),
      ]),
    );
  });
});
