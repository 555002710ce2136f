import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { podSessionName } from '../../src/protocol/pod-identity.js';

const VALID = /^[\w+=,.@-]{2,64}$/;

describe('podSessionName', () => {
  it('is <namespace>.<pod>', () => {
    expect(podSessionName({ namespace: 'shop', serviceAccount: { name: 'web' }, pod: { name: 'pod-a', uid: 'u' } })).toBe('shop.pod-a');
  });

  it('names the ServiceAccount for a token bound to no pod', () => {
    expect(podSessionName({ namespace: 'shop', serviceAccount: { name: 'web', uid: 'u' } })).toBe('shop.web');
  });

  it('trims a long name to 64 characters ending in the first 8 hex digits of the pod uid, so two long pods stay apart', () => {
    const namespace = 'a-very-long-namespace-name-for-the-team';
    const pod = (uid: string) => ({ namespace, serviceAccount: { name: 'sa' }, pod: { name: 'deployment-with-a-long-name-7d9f8c6b5-x2k4q', uid } });
    const one = podSessionName(pod('0D8B1234-5678-4abc-9def-000000000001'));
    const two = podSessionName(pod('9f00aaaa-5678-4abc-9def-000000000002'));
    expect(one).toHaveLength(64);
    expect(one.endsWith('-0d8b1234')).toBe(true);
    expect(one.startsWith(`${namespace}.deployment`)).toBe(true);
    expect(two.endsWith('-9f00aaaa')).toBe(true);
    expect(one).not.toBe(two);
  });

  it('is the same for every token of one pod (it reads only names and uid)', () => {
    const identity = { namespace: 'ns', serviceAccount: { name: 'sa', uid: 'x' }, pod: { name: 'p'.repeat(80), uid: 'abcdef0123' } };
    expect(podSessionName(identity)).toBe(podSessionName({ ...identity, serviceAccount: { name: 'sa', uid: 'other' } }));
  });

  it('always satisfies STS rules, whatever the claims hold', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), fc.string({ maxLength: 300 }), fc.option(fc.string({ maxLength: 40 })), (namespace, name, uid) => {
        const pod = uid === null ? { name } : { name, uid };
        expect(podSessionName({ namespace, serviceAccount: { name: 'sa' }, pod })).toMatch(VALID);
      }),
    );
    expect(podSessionName({ namespace: '', serviceAccount: { name: '' } })).toMatch(VALID);
  });
});
