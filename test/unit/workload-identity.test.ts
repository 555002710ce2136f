import { describe, expect, it } from 'vitest';
import { fitSessionName, VALID_SESSION_NAME } from '../../src/platform/aws/session-name.js';
import { sanitizeTagValue } from '../../src/platform/aws/session-tags.js';
import {
  ATTESTATION_CLAIM,
  parseTemplate,
  renderTemplate,
  type SessionTemplate,
  workloadIdentityOf,
  workloadIdentityOfToken,
} from '../../src/protocol/workload-identity.js';

/** The workload identity a token carries, and the templates filled from it (issue #18). */

const POD_TOKEN_CLAIMS = {
  sub: 'system:serviceaccount:payments:api',
  'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'api', uid: 'sa-uid' }, pod: { name: 'api-7d9f-abcde', uid: '0f1e2d3c-aaaa' } },
};
const VM_TOKEN_CLAIMS = {
  sub: 'alibaba-ecs:1234567890123456:cn-hangzhou:i-bp1abc',
  [ATTESTATION_CLAIM]: { kind: 'alibaba-ecs-identity', cloud: 'alibaba', account_id: '1234567890123456', region: 'cn-hangzhou', instance_id: 'i-bp1abc' },
};

function template(text: string): SessionTemplate {
  const parsed = parseTemplate(text);
  if ('problem' in parsed) throw new Error(parsed.problem);
  return parsed;
}

function jwt(payload: object): string {
  return `eyJhbGciOiJSUzI1NiJ9.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.c2ln`;
}

describe('workloadIdentityOf', () => {
  it("reads a pod's namespace, ServiceAccount and pod from a projected token", () => {
    expect(workloadIdentityOf(POD_TOKEN_CLAIMS, 'node-1')).toEqual({
      host: 'node-1',
      namespace: 'payments',
      serviceAccount: 'api',
      pod: 'api-7d9f-abcde',
      podUid: '0f1e2d3c-aaaa',
    });
  });

  it("reads a VM's attested account, instance, region and cloud from a token of crosscred issuer", () => {
    expect(workloadIdentityOf(VM_TOKEN_CLAIMS)).toEqual({ account: '1234567890123456', instance: 'i-bp1abc', region: 'cn-hangzhou', cloud: 'alibaba' });
  });

  it('believes no pod from a kubernetes.io claim that disagrees with sub', () => {
    const claims = { ...POD_TOKEN_CLAIMS, 'kubernetes.io': { ...POD_TOKEN_CLAIMS['kubernetes.io'], namespace: 'other' } };
    expect(workloadIdentityOf(claims)).toEqual({ namespace: 'payments', serviceAccount: 'api' });
  });

  it('gives nothing but the host for a token it cannot decode', () => {
    expect(workloadIdentityOfToken('not-a-jwt', 'h')).toEqual({ host: 'h' });
    expect(workloadIdentityOfToken('a.%%%.c', 'h')).toEqual({ host: 'h' });
    expect(workloadIdentityOfToken(jwt([1, 2]), 'h')).toEqual({ host: 'h' });
    expect(workloadIdentityOfToken(jwt(POD_TOKEN_CLAIMS))).toMatchObject({ namespace: 'payments', pod: 'api-7d9f-abcde' });
  });
});

describe('templates', () => {
  it('fill in every variable, or name the ones the token lacks', () => {
    const pod = workloadIdentityOf(POD_TOKEN_CLAIMS);
    expect(renderTemplate(template('{namespace}.{pod}'), pod)).toEqual({ value: 'payments.api-7d9f-abcde' });
    expect(renderTemplate(template('{account}-{instance}-{account}'), pod)).toEqual({ missing: ['account', 'instance'] });
    expect(renderTemplate(template('fixed'), {})).toEqual({ value: 'fixed' });
  });

  it('refuse unknown variables, stray braces and overlong text', () => {
    expect(parseTemplate('{nope}')).toHaveProperty('problem');
    expect(parseTemplate('a}b')).toHaveProperty('problem');
    expect(parseTemplate('{{namespace}}')).toHaveProperty('problem');
    expect(parseTemplate('x'.repeat(257))).toHaveProperty('problem');
  });
});

describe('fitSessionName', () => {
  it('cleans characters STS refuses and pads a short name', () => {
    expect(fitSessionName('team a/b:c')).toBe('team-a-b-c');
    expect(fitSessionName('x')).toBe('x-');
  });

  it('trims a long name the same way every time, keeping two long names apart', () => {
    const a = `${'n'.repeat(60)}.pod-a`;
    const b = `${'n'.repeat(60)}.pod-b`;
    expect(fitSessionName(a)).toHaveLength(64);
    expect(fitSessionName(a)).toBe(fitSessionName(a));
    expect(fitSessionName(a)).not.toBe(fitSessionName(b));
    expect(fitSessionName(a).slice(0, 55)).toBe(a.slice(0, 55));
  });

  it('always gives a name STS accepts, whatever it is given', () => {
    let seed = 7;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    for (let i = 0; i < 500; i++) {
      const text = String.fromCodePoint(...Array.from({ length: next() % 120 }, () => 32 + (next() % 2000)));
      expect(fitSessionName(text)).toMatch(VALID_SESSION_NAME);
    }
  });
});

describe('sanitizeTagValue', () => {
  it('never splits a character that would not fit whole at the 256-unit limit', () => {
    const value = `${'a'.repeat(255)}\u{20000}`;
    const out = sanitizeTagValue(value);
    expect(out).toBe('a'.repeat(255));
    expect(sanitizeTagValue(`${'a'.repeat(254)}\u{20000}`)).toBe(`${'a'.repeat(254)}\u{20000}`);
    expect(sanitizeTagValue('team#a')).toBe('team_a');
  });
});
