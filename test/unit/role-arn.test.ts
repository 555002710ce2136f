import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseRoleArn, roleArnParts } from '../../src/platform/aws/role-arn.js';

describe('parseRoleArn', () => {
  it('reads every partition, role paths with "/", and names of every allowed character', () => {
    expect(parseRoleArn('arn:aws:iam::123456789012:role/app')).toEqual({ partition: 'aws', accountId: '123456789012', path: '/', name: 'app' });
    expect(parseRoleArn('arn:aws-cn:iam::123456789012:role/team/app')).toEqual({
      partition: 'aws-cn',
      accountId: '123456789012',
      path: '/team/',
      name: 'app',
    });
    expect(roleArnParts('arn:aws-us-gov:iam::123456789012:role/a/b/c/Role_+=,.@-1')).toMatchObject({
      partition: 'aws-us-gov',
      path: '/a/b/c/',
      name: 'Role_+=,.@-1',
    });
    expect(roleArnParts('arn:aws-iso-b:iam::123456789012:role/x')?.partition).toBe('aws-iso-b');
    expect(roleArnParts(`arn:aws:iam::123456789012:role/${'n'.repeat(64)}`)?.name).toHaveLength(64);
    expect(roleArnParts(`arn:aws:iam::123456789012:role/${'p/'.repeat(255)}app`)?.path).toHaveLength(511);
  });

  it('refuses, saying why, what STS would refuse', () => {
    const problem = (text: string) => {
      const parsed = parseRoleArn(text);
      return 'problem' in parsed ? parsed.problem : undefined;
    };
    for (const text of [
      '',
      'arn:aws:iam::12345678901:role/app', // 11 digits
      'arn:aws:iam::123456789012:user/app',
      'arn:aws:sts::123456789012:assumed-role/app/session',
      'arn:azure:iam::123456789012:role/app',
      'arn:aws:iam:us-east-1:123456789012:role/app',
      ' arn:aws:iam::123456789012:role/app',
    ])
      expect(problem(text), text).toMatch(/is not an IAM role ARN/);
    expect(problem('arn:aws:iam::123456789012:role/')).toMatch(/no valid role name/);
    expect(problem('arn:aws:iam::123456789012:role/team/')).toMatch(/no valid role name/);
    expect(problem(`arn:aws:iam::123456789012:role/${'n'.repeat(65)}`)).toMatch(/no valid role name/);
    expect(problem('arn:aws:iam::123456789012:role/a b')).toMatch(/no valid role name/);
    expect(problem('arn:aws:iam::123456789012:role//app')).toMatch(/invalid role path/);
    expect(problem('arn:aws:iam::123456789012:role/te~am/app')).toMatch(/invalid role path/);
    expect(problem(`arn:aws:iam::123456789012:role/${'p/'.repeat(256)}app`)).toMatch(/invalid role path/);
    expect(problem(`arn:aws:iam::123456789012:role/${'x'.repeat(3000)}`)).toMatch(/longer than 2048/);
  });

  it('gives back the parts it was built from, for any valid path and name', () => {
    const word = fc.stringMatching(/^[\w+=,.@-]{1,20}$/);
    fc.assert(
      fc.property(
        fc.constantFrom('aws', 'aws-cn', 'aws-us-gov', 'aws-iso', 'aws-iso-f', 'aws-eusc'),
        fc.stringMatching(/^\d{12}$/),
        fc.array(word, { maxLength: 5 }),
        fc.stringMatching(/^[\w+=,.@-]{1,64}$/),
        (partition, accountId, segments, name) => {
          const path = `/${segments.map((s) => `${s}/`).join('')}`;
          expect(parseRoleArn(`arn:${partition}:iam::${accountId}:role${path}${name}`)).toEqual({ partition, accountId, path, name });
        },
      ),
    );
  });
});
