import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AttestedIdentity } from '../../src/issuer/attestor.js';
import { IssuerPolicy, type KindPolicy } from '../../src/issuer/policy.js';
import { buildTagsClaim, tagSourceProblem } from '../../src/issuer/session-tags.js';
import { sanitizeTagValue, tagKeyProblem } from '../../src/platform/aws/session-tags.js';
import { SUBJECT_TOKEN_TYPES } from '../../src/protocol/issuer-token-exchange.js';

const ECS = SUBJECT_TOKEN_TYPES.alibabaEcsIdentity;
const RAM = SUBJECT_TOKEN_TYPES.alibabaRamRole;
const CAM = SUBJECT_TOKEN_TYPES.tencentCamRole;

function identity(overrides: Partial<AttestedIdentity> = {}): AttestedIdentity {
  return {
    kind: ECS,
    cloud: 'alibaba',
    accountId: '1335926999564873',
    region: 'cn-hangzhou',
    instanceId: 'i-bp1abc',
    attributes: { 'zone-id': 'cn-hangzhou-h' },
    replayKey: 'k',
    replayUntilWall: 1,
    ...overrides,
  };
}

const noTags = { sessionTags: [], transitiveTagKeys: [] } as const;
const ecsPolicy: KindPolicy = { accounts: ['1335926999564873'], regions: ['cn-hangzhou'], instanceIds: ['*'], ...noTags };

describe('issuer policy', () => {
  it('forms the documented sub for each kind', () => {
    const policy = new IssuerPolicy({
      alibabaEcsIdentity: ecsPolicy,
      alibabaRamRole: { accounts: ['1335926999564873'], roles: ['app'], instanceIds: ['*'], ...noTags },
      tencentCamRole: { accounts: ['100012345678'], roles: ['4611686018427397919'], instanceIds: ['*'], ...noTags },
    });
    expect(policy.decide(identity(), ECS)).toEqual({ allowed: true, subject: 'alibaba-ecs:1335926999564873:cn-hangzhou:i-bp1abc' });
    expect(policy.decide(identity({ kind: RAM, roleName: 'app', region: undefined }), RAM)).toEqual({
      allowed: true,
      subject: 'alibaba-ram:1335926999564873:role/app',
    });
    expect(
      policy.decide(identity({ kind: CAM, cloud: 'tencent', accountId: '100012345678', roleId: '4611686018427397919', instanceId: undefined }), CAM),
    ).toEqual({
      allowed: true,
      subject: 'tencent-cam:100012345678:role/4611686018427397919',
    });
    expect(policy.kinds).toEqual(['alibabaEcsIdentity', 'alibabaRamRole', 'tencentCamRole']);
  });

  it('refuses what the allow-lists do not name; "*" allows any value and an absent one', () => {
    const policy = new IssuerPolicy({
      alibabaEcsIdentity: { ...ecsPolicy, instanceIds: ['i-one'] },
      alibabaRamRole: { accounts: ['1335926999564873'], roles: ['app'], ...noTags },
    });
    expect(policy.decide(identity({ accountId: '1' }), ECS)).toMatchObject({ allowed: false, reason: expect.stringContaining('account 1') });
    expect(policy.decide(identity({ region: 'cn-beijing' }), ECS)).toMatchObject({ allowed: false, reason: expect.stringContaining('region cn-beijing') });
    expect(policy.decide(identity({ instanceId: 'i-two' }), ECS)).toMatchObject({ allowed: false, reason: expect.stringContaining('instance i-two') });
    expect(policy.decide(identity({ instanceId: 'i-one' }), ECS)).toMatchObject({ allowed: true });
    expect(policy.decide(identity({ kind: RAM, roleName: 'other' }), RAM)).toMatchObject({ allowed: false, reason: expect.stringContaining('role other') });
    // A kind without a policy gets nothing.
    expect(policy.decide(identity({ kind: CAM, cloud: 'tencent', roleId: '1' }), CAM)).toMatchObject({ allowed: false });
    // An identity of another kind than the request's, or of the wrong cloud, is refused.
    expect(policy.decide(identity(), RAM)).toMatchObject({ allowed: false });
    expect(policy.decide(identity({ cloud: 'tencent' }), ECS)).toMatchObject({ allowed: false });
    // ECS needs region and instance for its sub even where the policy says "*".
    const any = new IssuerPolicy({ alibabaEcsIdentity: { ...ecsPolicy, regions: ['*'] } });
    expect(any.decide(identity({ region: undefined }), ECS)).toMatchObject({ allowed: false, reason: expect.stringContaining('subject') });
  });

  it('never judges a role kind by its instance: that comes from a session name the caller chose (issue #11 item 8)', () => {
    const policy = new IssuerPolicy({
      alibabaRamRole: { accounts: ['1335926999564873'], roles: ['app'], instanceIds: ['i-one'], ...noTags },
    });
    for (const instanceId of ['i-one', 'i-two', undefined]) {
      expect(policy.decide(identity({ kind: RAM, roleName: 'app', instanceId }), RAM)).toMatchObject({
        allowed: true,
        subject: 'alibaba-ram:1335926999564873:role/app',
      });
    }
  });

  it('refuses attested ids that would make the sub ambiguous', () => {
    const policy = new IssuerPolicy({ alibabaEcsIdentity: { ...ecsPolicy, regions: ['*'] } });
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), (value) => {
        for (const field of ['region', 'instanceId'] as const) {
          const decision = policy.decide(identity({ [field]: value }), ECS);
          if (decision.allowed) {
            expect(decision.subject.split(':')).toHaveLength(4);
            expect(value).toMatch(/^[A-Za-z0-9][A-Za-z0-9._@+=,-]*$/);
          }
        }
      }),
    );
    expect(policy.decide(identity({ instanceId: 'i-1:x' }), ECS)).toMatchObject({ allowed: false });
  });

  it("maps attested facts to session tags, sanitised to IAM's tag characters", () => {
    const tags = buildTagsClaim(
      [
        { key: 'account', from: 'accountId' },
        { key: 'zone', from: 'attribute:zone-id' },
        { key: 'kind', from: 'kind' },
        { key: 'odd', from: 'attribute:odd' },
        { key: 'absent', from: 'roleName' },
      ],
      ['account', 'absent'],
      identity({ attributes: { 'zone-id': 'cn-hangzhou-h', odd: 'a"b<c>\u0000d é' } }),
    );
    expect(tags).toEqual({
      principal_tags: { account: ['1335926999564873'], zone: ['cn-hangzhou-h'], kind: ['alibaba-ecs-identity'], odd: ['a_b_c__d é'] },
      transitive_tag_keys: ['account'],
    });
    expect(sanitizeTagValue('x'.repeat(300))).toHaveLength(256);
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (value) => {
        expect(sanitizeTagValue(value)).toMatch(/^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u);
      }),
    );
    expect(buildTagsClaim([{ key: 'r', from: 'roleId' }], [], identity())).toBeUndefined();
  });

  it('checks tag keys and sources', () => {
    expect(tagKeyProblem('Project')).toBeUndefined();
    expect(tagKeyProblem('aws:foo')).toContain('reserved');
    expect(tagKeyProblem('a"b')).toContain('characters');
    expect(tagKeyProblem('x'.repeat(129))).toContain('128');
    expect(tagSourceProblem('instanceId')).toBeUndefined();
    expect(tagSourceProblem('attribute:zone-id')).toBeUndefined();
    expect(tagSourceProblem('replayKey')).toContain('one of');
  });
});

describe('honest identity for the role kinds (issue #11 item 8)', () => {
  it('never makes a session tag of an instance id read from a role session name', () => {
    const rules = [
      { key: 'instance', from: 'instanceId' },
      { key: 'role', from: 'roleName' },
    ];
    const fromSession = identity({ kind: RAM, roleName: 'app', instanceId: 'i-chosen', attributes: { 'instance-id-source': 'session-name' } });
    expect(buildTagsClaim(rules, [], fromSession)).toEqual({ principal_tags: { role: ['app'] } });
    // An instance id an attestor established itself (ECS PKCS#7) still becomes a tag.
    expect(buildTagsClaim(rules, [], identity({ roleName: 'app' }))?.principal_tags).toMatchObject({ instance: ['i-bp1abc'] });
  });
});
