import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NODE_AGENT_HELP } from '../../src/cli/help.js';
import { NODE_AGENT_OPTIONS } from '../../src/cli/node-agent.js';
import { NODE_AGENT_DEFAULTS, resolveNodeAgentConfig } from '../../src/node-agent/config.js';
import { partitionOfRegion, readRolePath, roleGlob } from '../../src/node-agent/role-path.js';
import { admitToken, isRefusal, MAX_TOKEN_BYTES, tokenFromAuthorization } from '../../src/node-agent/token-admission.js';
import { readJwtShape } from '../../src/protocol/jwt-shape.js';

const NOW = Date.UTC(2026, 11, 7, 12, 0, 0);
const ISSUER = 'https://oidc.example/cluster';
const POLICY = { audience: 'sts.amazonaws.com', allowedIssuers: new Set([ISSUER]), allowUnboundTokens: false };

function jwt(payload: Record<string, unknown>, header: Record<string, unknown> = { alg: 'ES256', kid: 'k' }, signatureBytes = 64): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part(header)}.${part(payload)}.${randomBytes(signatureBytes).toString('base64url')}`;
}

const CLAIMS = {
  iss: ISSUER,
  aud: ['sts.amazonaws.com'],
  sub: 'system:serviceaccount:shop:web',
  exp: NOW / 1000 + 3600,
  iat: NOW / 1000 - 10,
  nbf: NOW / 1000 - 10,
  'kubernetes.io': { namespace: 'shop', serviceaccount: { name: 'web', uid: 'sa-uid' }, pod: { name: 'web-0', uid: 'abc123' } },
};

function codeOf(header: string | undefined, policy = POLICY): string {
  const result = admitToken(header, NOW, policy);
  return isRefusal(result) ? result.code : 'ADMITTED';
}

describe('admitToken', () => {
  it('admits a projected token and derives the session name from its claims', () => {
    const token = jwt(CLAIMS);
    const result = admitToken(token, NOW, POLICY);
    expect(isRefusal(result)).toBe(false);
    if (isRefusal(result)) return;
    expect(result).toMatchObject({ token, subject: CLAIMS.sub, sessionName: 'shop.web-0', expiresAtWall: CLAIMS.exp * 1000 });
    expect(codeOf(`Bearer ${token}`)).toBe('ADMITTED');
    expect(codeOf(jwt({ ...CLAIMS, aud: 'sts.amazonaws.com' }))).toBe('ADMITTED');
  });

  it.each([
    ['no header', undefined, 'TOKEN_MISSING'],
    ['an empty header', '', 'TOKEN_MISSING'],
    ['"Bearer " alone', 'Bearer ', 'TOKEN_MISSING'],
    ['too large', 'x'.repeat(MAX_TOKEN_BYTES + 1), 'TOKEN_TOO_LARGE'],
    ['not a JWT', 'abc', 'TOKEN_NOT_JWT'],
    ['alg none', jwt(CLAIMS, { alg: 'none' }), 'TOKEN_ALGORITHM'],
    ['alg HS256', jwt(CLAIMS, { alg: 'HS256' }), 'TOKEN_ALGORITHM'],
    ['a short ES256 signature', jwt(CLAIMS, { alg: 'ES256' }, 63), 'TOKEN_SIGNATURE_INCOMPLETE'],
    ['no exp', jwt({ ...CLAIMS, exp: undefined }), 'TOKEN_NO_EXPIRY'],
    ['expired', jwt({ ...CLAIMS, exp: NOW / 1000 }), 'TOKEN_EXPIRED'],
    ['nbf 31 s ahead', jwt({ ...CLAIMS, nbf: NOW / 1000 + 31 }), 'TOKEN_NOT_YET_VALID'],
    ['iat 31 s ahead', jwt({ ...CLAIMS, iat: NOW / 1000 + 31 }), 'TOKEN_NOT_YET_VALID'],
    ['a string iat', jwt({ ...CLAIMS, iat: 'yesterday' }), 'TOKEN_NOT_YET_VALID'],
    ['another audience', jwt({ ...CLAIMS, aud: ['pods.eks.amazonaws.com'] }), 'TOKEN_AUDIENCE'],
    ['no audience', jwt({ ...CLAIMS, aud: undefined }), 'TOKEN_AUDIENCE'],
    ['another issuer', jwt({ ...CLAIMS, iss: 'https://oidc.example/other' }), 'TOKEN_ISSUER'],
    ['a user subject', jwt({ ...CLAIMS, sub: 'system:admin' }), 'TOKEN_SUBJECT'],
    ['a subject with upper case', jwt({ ...CLAIMS, sub: 'system:serviceaccount:Shop:web' }), 'TOKEN_SUBJECT'],
    ['a claim naming another namespace', jwt({ ...CLAIMS, 'kubernetes.io': { ...CLAIMS['kubernetes.io'], namespace: 'other' } }), 'TOKEN_SUBJECT'],
    ['no pod claim', jwt({ ...CLAIMS, 'kubernetes.io': { namespace: 'shop', serviceaccount: { name: 'web' } } }), 'TOKEN_NOT_POD_BOUND'],
  ])('refuses %s', (_why, header, code) => {
    expect(codeOf(header)).toBe(code);
  });

  it('tolerates 30 s of clock skew on nbf and iat', () => {
    expect(codeOf(jwt({ ...CLAIMS, nbf: NOW / 1000 + 30, iat: NOW / 1000 + 30 }))).toBe('ADMITTED');
  });

  it('accepts a token bound to no pod with allowUnboundTokens, named after the ServiceAccount', () => {
    const unbound = jwt({ ...CLAIMS, 'kubernetes.io': { namespace: 'shop', serviceaccount: { name: 'web', uid: 'u' } } });
    const result = admitToken(unbound, NOW, { ...POLICY, allowUnboundTokens: true });
    expect(isRefusal(result) ? result.code : result.sessionName).toBe('shop.web');
  });

  it('never puts the token in a refusal', () => {
    const token = jwt({ ...CLAIMS, iss: 'https://elsewhere' });
    const result = admitToken(token, NOW, POLICY);
    expect(JSON.stringify(result)).not.toContain(token.split('.')[2]);
  });

  it('reads the raw token or a Bearer one', () => {
    expect(tokenFromAuthorization('a.b.c')).toBe('a.b.c');
    expect(tokenFromAuthorization('bearer a.b.c')).toBe('a.b.c');
    expect(tokenFromAuthorization(undefined)).toBeUndefined();
    expect(readJwtShape('a.b.c', NOW)).toMatchObject({ ok: false, problem: 'not-jwt' });
  });
});

describe('readRolePath', () => {
  it('takes the rest of the path as the ARN, role paths and percent-escapes included', () => {
    expect(readRolePath('/v1/credentials/arn:aws-us-gov:iam::123456789012:role/team/a+b=c,d.e@f_g-h')).toMatchObject({
      kind: 'role',
      arn: 'arn:aws-us-gov:iam::123456789012:role/team/a+b=c,d.e@f_g-h',
      parts: { partition: 'aws-us-gov', accountId: '123456789012', path: '/team/', name: 'a+b=c,d.e@f_g-h' },
    });
    expect(readRolePath('/v1/credentials/arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp')).toMatchObject({
      kind: 'role',
      arn: 'arn:aws:iam::123456789012:role/app',
    });
    expect(readRolePath('/v1/credentials')).toEqual({ kind: 'missing' });
    expect(readRolePath('/v1/credentials/')).toEqual({ kind: 'missing' });
    expect(readRolePath('/v1/credential')).toEqual({ kind: 'not-found' });
    expect(readRolePath(`/v1/credentials/arn:aws:iam::123456789012:role/${'a/'.repeat(1100)}x`)).toEqual({ kind: 'too-long' });
    expect(readRolePath(`/v1/credentials/${'%41'.repeat(2100)}`)).toEqual({ kind: 'too-long' });
    expect(readRolePath('/v1/credentials/arn:aws:iam::123456789012:role/%E0%A4%A')).toMatchObject({ kind: 'invalid' });
  });

  it('knows each region prefix partition', () => {
    expect(['us-east-1', 'cn-north-1', 'us-gov-west-1', 'us-iso-east-1', 'us-isob-east-1', 'eu-isoe-west-1', 'us-isof-south-1'].map(partitionOfRegion)).toEqual(
      ['aws', 'aws-cn', 'aws-us-gov', 'aws-iso', 'aws-iso-b', 'aws-iso-e', 'aws-iso-f'],
    );
  });

  it('matches allow-list globs with * across slashes and nothing else loosely', () => {
    const glob = roleGlob('arn:aws:iam::111122223333:role/team-a/*');
    expect(glob.test('arn:aws:iam::111122223333:role/team-a/app')).toBe(true);
    expect(glob.test('arn:aws:iam::111122223333:role/team-a/sub/app')).toBe(true);
    expect(glob.test('arn:aws:iam::111122223333:role/team-b/app')).toBe(false);
    expect(roleGlob('arn:aws:iam::111122223333:role/a.b').test('arn:aws:iam::111122223333:role/aXb')).toBe(false);
  });
});

describe('node-agent configuration and help', () => {
  it('needs an allowed issuer and a region, and names each bad flag', () => {
    expect(() => resolveNodeAgentConfig({}, {})).toThrow(/--allowed-issuer: required[\s\S]*--region: required/);
    expect(() =>
      resolveNodeAgentConfig(
        { 'allowed-issuer': [ISSUER], region: 'us-east-1', 'rate-burst': '0', 'max-entries': 'lots', 'allowed-role': ['role/app'], listen: ['1.2.3.4:80=app'] },
        {},
      ),
    ).toThrow(/--listen[\s\S]*--allowed-role[\s\S]*--max-entries[\s\S]*--rate-burst/);
  });

  it('has the documented defaults', () => {
    const config = resolveNodeAgentConfig({ 'allowed-issuer': [ISSUER] }, { AWS_REGION: 'eu-west-1' });
    expect(config).toMatchObject({
      listeners: [
        { host: '169.254.170.23', port: 80 },
        { host: 'fd00:ec2::23', port: 80 },
      ],
      admin: { host: '127.0.0.1', port: 2703 },
      audience: 'sts.amazonaws.com',
      region: 'eu-west-1',
      maxEntries: 10_000,
      maxCacheBytes: 64 * 1024 * 1024,
      idleSeconds: 900,
      ratePerSecond: 5,
      rateBurst: 20,
      allowUnboundTokens: false,
      allowedRoles: [],
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('lists every flag and its default in the help text', () => {
    for (const flag of Object.keys(NODE_AGENT_OPTIONS)) expect(NODE_AGENT_HELP).toContain(`--${flag}`);
    for (const value of [
      String(NODE_AGENT_DEFAULTS.maxEntries),
      String(NODE_AGENT_DEFAULTS.maxCacheBytes),
      String(NODE_AGENT_DEFAULTS.idleSeconds),
      String(NODE_AGENT_DEFAULTS.ratePerSecond),
      String(NODE_AGENT_DEFAULTS.rateBurst),
      NODE_AGENT_DEFAULTS.adminListen,
      ...NODE_AGENT_DEFAULTS.listen,
      NODE_AGENT_DEFAULTS.audience,
    ]) {
      expect(NODE_AGENT_HELP).toContain(`${value}`);
    }
  });
});
