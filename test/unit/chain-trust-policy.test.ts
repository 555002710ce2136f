import { describe, expect, it } from 'vitest';
import { chainTrustPolicyFor, formatChainTrustText } from '../../src/advice/chain-trust-policy.js';
import type { AwsRoleConfig, ChainHopConfig } from '../../src/config/config.js';

const HUB = 'arn:aws:iam::111122223333:role/hub';
const SHARED = 'arn:aws:iam::444455556666:role/shared-services';
const TARGET = 'arn:aws:iam::777788889999:role/payments/app';

function roleWith(chain: ChainHopConfig[]): AwsRoleConfig {
  return {
    cloud: 'aws',
    name: 'app',
    roleArn: HUB,
    accountId: '111122223333',
    token: { source: { kind: 'file', path: '/var/run/token', platform: 'configured' }, reason: 'configured', notes: [] },
    sessionName: 'crosscred',
    region: 'us-east-1',
    chain,
  };
}

function hop(roleArn: string, extra: Partial<ChainHopConfig> = {}): ChainHopConfig {
  return { roleArn, accountId: /::(\d{12}):/.exec(roleArn)![1]!, ...extra };
}

describe('trust-policy advice for a role chain', () => {
  it('hub + 2 hops, no ExternalId or tags: each target trusts the role before it with sts:AssumeRole alone', () => {
    const hops = chainTrustPolicyFor({ role: roleWith([hop(SHARED), hop(TARGET)]), tokenSessionTags: false });
    expect(hops.map((h) => h.trustPolicy)).toEqual([
      { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: HUB }, Action: 'sts:AssumeRole' }] },
      { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: SHARED }, Action: 'sts:AssumeRole' }] },
    ]);
    expect(hops.map((h) => h.callerPolicy)).toEqual([
      { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: SHARED }] },
      { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: TARGET }] },
    ]);
    expect(hops[1]!.commands).toEqual([
      ['aws', 'iam', 'update-assume-role-policy', '--role-name', 'app', '--policy-document', 'file://trust-policy-hop-2.json'],
      [
        'aws',
        'iam',
        'put-role-policy',
        '--role-name',
        'shared-services',
        '--policy-name',
        'crosscred-assume-app',
        '--policy-document',
        'file://assume-hop-2.json',
      ],
    ]);
    expect(hops[0]!.notes.join('\n')).toContain('not a session of it');
    expect(hops[0]!.notes.join('\n')).toContain('rerun with --session-tags');
  });

  it('an ExternalId becomes a StringEquals condition; tags and transitive keys bring sts:TagSession where they apply', () => {
    const hops = chainTrustPolicyFor({
      role: roleWith([
        hop(SHARED, { externalId: 'ext-shared-1', tags: [{ key: 'team', value: '{namespace}' }], transitiveTagKeys: ['team'] }),
        hop(TARGET, { externalId: 'ext-app-2' }),
      ]),
      tokenSessionTags: false,
    });
    expect(hops[0]!.trustPolicy.Statement[0]).toEqual({
      Effect: 'Allow',
      Principal: { AWS: HUB },
      Action: ['sts:AssumeRole', 'sts:TagSession'],
      Condition: { StringEquals: { 'sts:ExternalId': 'ext-shared-1' } },
    });
    expect(hops[0]!.callerPolicy.Statement[0]!.Action).toEqual(['sts:AssumeRole', 'sts:TagSession']);
    // Hop 2 sets no tags of its own, but the transitive ones of hop 1 arrive: its trust allows them, its caller sends none.
    expect(hops[1]!.trustPolicy.Statement[0]).toEqual({
      Effect: 'Allow',
      Principal: { AWS: SHARED },
      Action: ['sts:AssumeRole', 'sts:TagSession'],
      Condition: { StringEquals: { 'sts:ExternalId': 'ext-app-2' } },
    });
    expect(hops[1]!.callerPolicy.Statement[0]!.Action).toBe('sts:AssumeRole');
    expect(hops[1]!.notes.join('\n')).toContain('transitive (team)');
  });

  it("the token's transitive tags reach every hop: each trust allows sts:TagSession and says why", () => {
    const hops = chainTrustPolicyFor({ role: roleWith([hop(SHARED), hop(TARGET)]), tokenSessionTags: true });
    for (const h of hops) {
      expect(h.trustPolicy.Statement[0]!.Action).toEqual(['sts:AssumeRole', 'sts:TagSession']);
      expect(h.notes.join('\n')).toContain('the token carries session tags');
    }
  });

  it("a hop's transitive tags last for the rest of the chain, not only the next hop", () => {
    const THIRD = 'arn:aws:iam::123456789012:role/third';
    const hops = chainTrustPolicyFor({
      role: roleWith([hop(SHARED, { tags: [{ key: 'team', value: 'a' }], transitiveTagKeys: ['team'] }), hop(TARGET), hop(THIRD)]),
      tokenSessionTags: false,
    });
    expect(hops[1]!.trustPolicy.Statement[0]!.Action).toEqual(['sts:AssumeRole', 'sts:TagSession']);
    expect(hops[2]!.trustPolicy.Statement[0]!.Action).toEqual(['sts:AssumeRole', 'sts:TagSession']);
    expect(hops[2]!.notes.join('\n')).toContain('hop 1 marks tags transitive (team)');
  });

  it('no chain, no advice; the text numbers hops after the hub and embeds both policies and commands', () => {
    expect(chainTrustPolicyFor({ role: roleWith([]), tokenSessionTags: false })).toEqual([]);
    expect(formatChainTrustText([])).toBe('');
    const hops = chainTrustPolicyFor({ role: roleWith([hop(SHARED, { externalId: 'ext-shared-1' }), hop(TARGET)]), tokenSessionTags: false });
    const text = formatChainTrustText(hops);
    expect(text).toContain(`# 3. Hop 1: ${HUB} assumes ${SHARED} with sts:AssumeRole.`);
    expect(text).toContain(`# 4. Hop 2: ${SHARED} assumes ${TARGET} with sts:AssumeRole.`);
    expect(text).toContain('#    aws iam update-assume-role-policy --role-name shared-services --policy-document file://trust-policy-hop-1.json');
    expect(text).toContain(
      '#    aws iam put-role-policy --role-name hub --policy-name crosscred-assume-shared-services --policy-document file://assume-hop-1.json',
    );
    expect(text).toContain('(in account 777788889999)');
    expect(text).toContain(JSON.stringify(hops[0]!.trustPolicy, null, 2));
    expect(text).toContain(JSON.stringify(hops[1]!.callerPolicy, null, 2));
    expect(text).toContain('"Version": "2012-10-17"');
  });
});
