import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolveNodeAgentConfig } from '../../src/node-agent/config.js';
import { POD_TEMPLATE_VARIABLES, parsePodSessionTemplate } from '../../src/node-agent/session-name.js';
import { admitToken, isRefusal, type TokenAdmissionPolicy, type TokenRefusal } from '../../src/node-agent/token-admission.js';
import type { SessionTemplate } from '../../src/protocol/workload-identity.js';

const NOW = Date.UTC(2026, 11, 7, 12, 0, 0);
const ISSUER = 'https://oidc.example/cluster';
const VALID = /^[\w+=,.@-]{2,64}$/;

function jwt(payload: Record<string, unknown>): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'ES256', kid: 'k' })}.${part(payload)}.${randomBytes(64).toString('base64url')}`;
}

interface PodToken {
  namespace?: string;
  serviceAccount?: string;
  pod?: { name: string; uid?: string };
  issuedAt?: number;
}

/** A projected token of one pod; each call differs in its times and ServiceAccount uid, as a rotated token does. */
function podToken({ namespace = 'shop', serviceAccount = 'web', pod, issuedAt = NOW / 1000 - 10 }: PodToken = {}): string {
  return jwt({
    iss: ISSUER,
    aud: ['sts.amazonaws.com'],
    sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
    iat: issuedAt,
    nbf: issuedAt,
    exp: issuedAt + 3600,
    'kubernetes.io': { namespace, serviceaccount: { name: serviceAccount, uid: randomBytes(8).toString('hex') }, ...(pod ? { pod } : {}) },
  });
}

function template(text: string): SessionTemplate {
  const parsed = parsePodSessionTemplate(text);
  if ('problem' in parsed) throw new Error(`test template ${text} ${parsed.problem}`);
  return parsed;
}

function policy(text: string | undefined, allowUnboundTokens = false): TokenAdmissionPolicy {
  return {
    audience: 'sts.amazonaws.com',
    allowedIssuers: new Set([ISSUER]),
    allowUnboundTokens,
    ...(text !== undefined ? { sessionNameTemplate: template(text) } : {}),
  };
}

function sessionName(token: string, p: TokenAdmissionPolicy): string {
  const result = admitToken(token, NOW, p);
  if (isRefusal(result)) throw new Error(`refused: ${result.code}`);
  return result.sessionName;
}

const POD = { name: 'web-7d9f8c6b5-x2k4q', uid: '0d8b1234-5678-4abc-9def-000000000001' };

describe('--session-name-template, checked at start-up', () => {
  it('accepts every variable a pod token carries', () => {
    const parsed = parsePodSessionTemplate(POD_TEMPLATE_VARIABLES.map((v) => `{${v}}`).join('.'));
    expect(parsed).toMatchObject({ variables: ['namespace', 'serviceAccount', 'pod', 'podUid'] });
  });

  it.each([
    ['{account}', "a VM's cloud account"],
    ['{instance}', "a VM's instance id"],
    ['{region}', "a VM's region"],
    ['{cloud}', 'the cloud crosscred issuer attested'],
    ['{host}', "this node's name, not the pod's: every pod on the node would share it"],
  ])('refuses %s, saying why', (variable, why) => {
    const parsed = parsePodSessionTemplate(`{namespace}-${variable}`);
    expect('problem' in parsed && parsed.problem).toContain(`names ${variable}, ${why}`);
  });

  it.each([
    ['an unknown variable', '{namespace}-{node}', 'names {node}, which is not one of'],
    ['a stray brace', '{namespace}}', 'has a brace outside a {variable}'],
    ['no variable', 'fixed-name', 'names no variable'],
    ['an empty template', '', 'names no variable'],
  ])('refuses %s', (_why, text, problem) => {
    const parsed = parsePodSessionTemplate(text);
    expect('problem' in parsed && parsed.problem).toContain(problem);
  });

  it('is a configuration problem naming the flag, listed with the others', () => {
    const flags = { 'allowed-issuer': [ISSUER], region: 'us-east-1' };
    expect(() => resolveNodeAgentConfig({ ...flags, 'session-name-template': '{pod}@{host}', 'rate-burst': '0' }, {})).toThrow(
      /--session-name-template: "\{pod\}@\{host\}" names \{host\}[\s\S]*--rate-burst/,
    );
    expect(resolveNodeAgentConfig({ ...flags, 'session-name-template': '{namespace}-{pod}' }, {}).sessionNameTemplate).toEqual({
      text: '{namespace}-{pod}',
      variables: ['namespace', 'pod'],
    });
    expect(resolveNodeAgentConfig(flags, {}).sessionNameTemplate).toBeUndefined();
  });
});

describe('a pod session name from the template', () => {
  it('is <namespace>.<pod> with no template, as before', () => {
    expect(sessionName(podToken({ pod: POD }), policy(undefined))).toBe('shop.web-7d9f8c6b5-x2k4q');
  });

  it('renders the template over the admitted identity', () => {
    expect(sessionName(podToken({ pod: POD }), policy('{namespace}-{serviceAccount}-{pod}'))).toBe('shop-web-web-7d9f8c6b5-x2k4q');
    expect(sessionName(podToken({ pod: POD }), policy('{pod}@{podUid}'))).toBe(`${POD.name}@${POD.uid}`);
  });

  it('is the same for two tokens of one pod (a rotation), and differs for another pod', () => {
    const p = policy('{namespace}-{serviceAccount}-{pod}');
    const first = podToken({ pod: POD });
    const rotated = podToken({ pod: POD, issuedAt: NOW / 1000 - 1200 });
    expect(first).not.toBe(rotated);
    expect(sessionName(rotated, p)).toBe(sessionName(first, p));
    expect(sessionName(podToken({ pod: { ...POD, name: 'web-other' } }), p)).not.toBe(sessionName(first, p));
  });

  it('trims a long name to 64 characters the same way every time, keeping two long pods apart', () => {
    const p = policy('{namespace}-{serviceAccount}-{pod}-{podUid}');
    const namespace = 'a-very-long-namespace-name-for-the-team';
    const one = sessionName(podToken({ namespace, pod: POD }), p);
    const rendered = `${namespace}-web-${POD.name}-${POD.uid}`;
    expect(one).toHaveLength(64);
    expect(one).toBe(`${rendered.slice(0, 55)}-${createHash('sha256').update(rendered).digest('hex').slice(0, 8)}`);
    expect(sessionName(podToken({ namespace, pod: POD, issuedAt: NOW / 1000 - 600 }), p)).toBe(one);
    const two = sessionName(podToken({ namespace, pod: { ...POD, uid: '9f00aaaa-5678-4abc-9def-000000000002' } }), p);
    expect(two).toHaveLength(64);
    expect(two).not.toBe(one);
  });

  it("cleans characters STS refuses, from the template's text and from the claims", () => {
    expect(sessionName(podToken({ pod: POD }), policy('{namespace}/{pod}'))).toBe('shop-web-7d9f8c6b5-x2k4q');
    expect(sessionName(podToken({ pod: { name: 'web 0:ä', uid: 'u' } }), policy('{namespace}.{pod}'))).toBe('shop.web-0--');
  });

  it('always satisfies STS rules, whatever the pod claim holds', () => {
    const p = policy('{pod}');
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 300 }), (name) => {
        expect(sessionName(podToken({ pod: { name, uid: 'u' } }), p)).toMatch(VALID);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses a token that lacks a variable the template names, with its own code and fixed text', () => {
    const unbound = podToken();
    for (const text of ['{namespace}-{pod}', '{serviceAccount}-{podUid}']) {
      const result = admitToken(unbound, NOW, policy(text, true)) as TokenRefusal;
      expect(result).toMatchObject({ status: 401, code: 'TOKEN_LACKS_SESSION_NAME', reason: 'token_lacks_session_name' });
      expect(result.message).not.toContain('shop');
    }
    // A pod claim without a uid lacks {podUid} just the same.
    expect(admitToken(podToken({ pod: { name: 'web-0' } }), NOW, policy('{pod}-{podUid}'))).toMatchObject({ code: 'TOKEN_LACKS_SESSION_NAME' });
    // Without --allow-unbound-tokens the token is refused as unbound first.
    expect(admitToken(unbound, NOW, policy('{pod}'))).toMatchObject({ code: 'TOKEN_NOT_POD_BOUND' });
    // A template over what every token carries names an unbound token too.
    expect(sessionName(unbound, policy('{namespace}-{serviceAccount}', true))).toBe('shop-web');
  });
});
