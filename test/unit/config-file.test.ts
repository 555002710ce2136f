import { describe, expect, it } from 'vitest';
import { configInvalid, lazySchema, parseConfigText, readConfigText } from '../../src/config/config-file.js';
import { loadConfig } from '../../src/config/load.js';
import { isCrosscredError } from '../../src/core/errors.js';
import { parseIssuerConfigText } from '../../src/issuer/issuer-config.js';

const FLAGS_ONLY = { 'role-arn': 'arn:aws:iam::111122223333:role/app', 'token-file': '/run/token', region: 'eu-west-1' };

describe('the shared config-file helpers', () => {
  const schema = lazySchema((z) => z.strictObject({ name: z.string(), nested: z.strictObject({ port: z.number() }).optional() }));

  it('parses YAML and JSON alike, and treats an empty file as an empty object', () => {
    expect(parseConfigText('name: a\n', schema)).toEqual({ data: { name: 'a' } });
    expect(parseConfigText('{"name": "a", "nested": {"port": 1}}', schema)).toEqual({ data: { name: 'a', nested: { port: 1 } } });
    expect(parseConfigText('', schema)).toMatchObject({ problems: [expect.stringMatching(/^name: /)] });
  });

  it('names the path of every schema problem, or (top level)', () => {
    const result = parseConfigText('name: 1\nnested: {port: x}\ntypo: 1\n', schema);
    expect('problems' in result && result.problems.map((p) => p.split(':')[0])).toEqual(['name', 'nested.port', '(top level)']);
    expect(parseConfigText('- a\n', schema)).toMatchObject({ problems: [expect.stringMatching(/^\(top level\): /)] });
  });

  it('returns the first line of a syntax error', () => {
    const result = parseConfigText('name: [\n', schema);
    expect(result).toHaveProperty('syntaxError');
    expect('syntaxError' in result && result.syntaxError).not.toContain('\n');
  });

  it('refuses a file that expands too many aliases', () => {
    // Each line refers to the one before twelve times: 10 × 12^8 nodes once expanded.
    const names = 'abcdefghi';
    const lines = [`a: &a [${Array(10).fill('x').join(', ')}]`];
    for (let i = 1; i < names.length; i++)
      lines.push(
        `${names[i]}: &${names[i]} [${Array(12)
          .fill(`*${names[i - 1]}`)
          .join(', ')}]`,
      );
    const bomb = lines.join('\n');
    expect(parseConfigText(bomb, schema)).toHaveProperty('syntaxError');
  });

  it('words CONFIG_INVALID as a heading and one line per problem', () => {
    const err = configInvalid('config file /c.yaml', ['a: bad', 'b: worse']);
    expect(isCrosscredError(err, 'CONFIG_INVALID')).toBe(true);
    expect(err.message).toBe('config file /c.yaml:\n  - a: bad\n  - b: worse');
  });

  it('turns a failed read into CONFIG_FILE_UNREADABLE worded from the errno code', () => {
    const enoent = () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    };
    try {
      readConfigText('/x.yaml', enoent, (code) => `cannot read /x.yaml (${code})`);
      expect.unreachable('read succeeded');
    } catch (err) {
      expect(isCrosscredError(err, 'CONFIG_FILE_UNREADABLE')).toBe(true);
      expect((err as Error).message).toBe('cannot read /x.yaml (ENOENT)');
    }
    expect(
      readConfigText(
        '/x.yaml',
        () => 'text',
        () => 'unused',
      ),
    ).toBe('text');
  });
});

describe('serve and the issuer report schema problems the same way', () => {
  it('names the field path in both', () => {
    const issuer = parseIssuerConfigText('publicUrl: https://i.example.com\nkeys: [{file: a.pem, active: yes}]\n', '/etc/i.yaml');
    expect(issuer).toMatchObject({ problems: [expect.stringMatching(/^keys\.0\.active: /)] });
    try {
      loadConfig({ flags: { ...FLAGS_ONLY, config: '/c.yaml' }, env: {}, readText: () => 'listen: [{address: 1}]\n' });
      expect.unreachable('loaded');
    } catch (err) {
      expect(isCrosscredError(err, 'CONFIG_INVALID')).toBe(true);
      expect((err as Error).message).toMatch(/^config file \/c\.yaml:\n {2}- listen\.0/);
    }
  });
});
