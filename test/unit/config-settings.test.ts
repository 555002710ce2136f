import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SERVE_HELP } from '../../src/cli/help.js';
import { SERVE_OPTIONS } from '../../src/cli/serve-options.js';
import { FOREIGN_VARIABLES, TOKEN_FILE_VARIABLES } from '../../src/config/detect-token-source.js';
import { ROLE_SESSION_KEYS, serveFileSchema } from '../../src/config/file-schema.js';
import { IGNORED_VARIABLES, SERVE_SETTINGS, SETTING_IDS, type ServeFlags, settingSpec, settingsReference } from '../../src/config/settings.js';

// The parser's options and the table's flags are the same set (checked by the compiler too).
type ParserFlags = Exclude<keyof typeof SERVE_OPTIONS, 'help'>;
const sameFlagSets: [ParserFlags] extends [keyof ServeFlags] ? ([keyof ServeFlags] extends [ParserFlags] ? true : false) : false = true;

const reference = settingsReference();
const tableFlags = reference.flatMap((r) => (r.flag ? [r.flag.slice(2)] : []));

/** The lines of SERVE_HELP from `--flag` to the next option. */
function helpParagraph(flag: string): string {
  const start = SERVE_HELP.indexOf(`\n  --${flag} `);
  expect(start, `--${flag} in SERVE_HELP`).toBeGreaterThanOrEqual(0);
  const next = SERVE_HELP.slice(start + 1).search(/\n {2}(--|-h)/);
  return SERVE_HELP.slice(start + 1, next < 0 ? undefined : start + 1 + next);
}

describe('the settings table and the command line', () => {
  it('has every flag the parser accepts, and no other', () => {
    expect(sameFlagSets).toBe(true);
    const parserFlags = Object.keys(SERVE_OPTIONS).filter((f) => f !== 'help');
    expect([...tableFlags].sort()).toEqual([...parserFlags].sort());
    expect(new Set(tableFlags).size).toBe(tableFlags.length);
  });

  it('gives each flag the parser type its value type needs', () => {
    const expected = { text: 'string', number: 'string', command: 'string', switch: 'boolean', list: 'string', listen: 'string' } as const;
    for (const id of SETTING_IDS) {
      const spec = settingSpec(id);
      if (!spec.flag) continue;
      const option: { type: string; multiple?: boolean } = SERVE_OPTIONS[spec.flag as ParserFlags];
      expect(option.type, spec.flag).toBe(expected[spec.type]);
      expect(option.multiple ?? false, spec.flag).toBe(spec.type === 'list' || spec.type === 'listen');
    }
  });
});

describe('the settings table and the help text', () => {
  it('documents every flag, with the variables it reads and its default', () => {
    for (const id of SETTING_IDS) {
      const spec = settingSpec(id);
      if (!spec.flag) continue;
      const paragraph = helpParagraph(spec.flag);
      for (const name of spec.env ?? []) expect(paragraph, `--${spec.flag}`).toContain(name);
      const d = spec.default;
      if (d && 'value' in d && typeof d.value !== 'boolean' && !(Array.isArray(d.value) && d.value.length === 0)) {
        const value = Array.isArray(d.value) ? d.value.join(', ') : String(d.value);
        const escaped = value.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
        expect(paragraph, `--${spec.flag} default`).toMatch(new RegExp(`default:? ${escaped}|${escaped} \\(default`, 'i'));
      }
    }
  });

  it('names the proxy variables, which have no flag', () => {
    for (const r of reference.filter((r) => r.section === 'proxies')) {
      for (const name of r.env) expect(SERVE_HELP).toContain(name.toUpperCase());
    }
  });
});

describe('the settings table and the configuration table of docs/configuration.md', () => {
  const page = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  const rows = page
    .slice(page.indexOf('| flag | config file key | environment | meaning |'))
    .split('\n')
    .slice(2)
    .filter((_, i, all) => all.slice(0, i + 1).every((l) => l.startsWith('|')))
    .map((line) => {
      const [flags = '', keys = '', env = ''] = line.split(/(?<!\\)\|/).slice(1);
      const spans = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
      return {
        flags: [...flags.matchAll(/--([a-z0-9-]+)/g)].map((m) => m[1]!),
        keys: spans(keys).map((k) => /^(roles\[\]\.)?[A-Za-z0-9]+/.exec(k)![0]),
        env: spans(env).filter((v) => /^[A-Z][A-Z0-9_]+$/.test(v)),
      };
    });

  it('lists every flag once', () => {
    expect(rows.flatMap((r) => r.flags).sort()).toEqual([...tableFlags].sort());
  });

  it('gives each flag the same config-file keys and variables', () => {
    for (const row of rows) {
      const settings = row.flags.length
        ? reference.filter((r) => row.flags.includes(r.flag?.slice(2) ?? ''))
        : reference.filter((r) => r.env.some((v) => row.env.includes(v)));
      expect(settings.length, row.flags.join(', ') || row.env.join(', ')).toBeGreaterThan(0);
      expect(new Set(settings.flatMap((s) => s.fileKeys)), row.flags.join(', ')).toEqual(new Set(row.keys));
      const read = new Set(settings.flatMap((s) => [...s.env, ...Object.values(s.envByCloud).flat()].map((v) => v.toUpperCase())));
      const own = new Set(settings.flatMap((s) => (settingSpec(s.id).env ?? []).map((v) => v.toUpperCase())));
      for (const v of row.env) expect(read, `${v} read for ${row.flags.join(', ')}`).toContain(v);
      for (const v of own) expect(row.env, `${v} documented for ${row.flags.join(', ')}`).toContain(v);
    }
  });
});

describe('the settings table and the config file schema', () => {
  const shape = serveFileSchema().shape;
  const roleShape = shape.roles.unwrap().element.shape;

  it('has a setting for every top-level key, and no other key', () => {
    const keys = Object.keys(shape).filter((k) => k !== 'roles');
    expect(SETTING_IDS.flatMap((id) => settingSpec(id).file ?? []).sort()).toEqual(keys.sort());
  });

  it('has a setting for every key of a role, and no other key', () => {
    // The session documents are not settings: written out here, so a wrong ROLE_SESSION_KEYS is caught.
    expect([...ROLE_SESSION_KEYS].sort()).toEqual(['chain', 'policy', 'policyArns']);
    const settings = Object.keys(roleShape).filter((k) => !['chain', 'policy', 'policyArns'].includes(k));
    expect(SETTING_IDS.flatMap((id) => settingSpec(id).role?.key ?? []).sort()).toEqual(settings.sort());
  });
});

describe('the settings table itself', () => {
  it('reads variables only for text settings, and always names where they sit in the precedence', () => {
    for (const id of SETTING_IDS) {
      const spec = settingSpec(id);
      if (spec.env) expect(spec.type, id).toBe('text');
      // A switch is read from a variable only as another cloud's own (ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true).
      if (spec.envByCloud) expect(['text', 'switch'], id).toContain(spec.type);
      expect(spec.precedence.includes('env'), id).toBe(spec.env !== undefined || spec.envByCloud !== undefined);
      expect(spec.precedence.includes('flag'), id).toBe(spec.flag !== undefined);
      expect(spec.precedence.includes('file'), id).toBe(spec.file !== undefined);
    }
  });

  it('does not give a never-inherited role setting a top-level file key', () => {
    for (const id of SETTING_IDS) if (settingSpec(id).role?.inherits === 'never') expect(settingSpec(id).file, id).toBeUndefined();
  });

  it('lists the variables token detection reads, and the ones it notes and ignores', () => {
    expect(SERVE_SETTINGS.tokenFile.alsoReads).toEqual(TOKEN_FILE_VARIABLES);
    expect(SETTING_IDS.flatMap((id) => settingSpec(id).ignores ?? []).sort()).toEqual(Object.keys(FOREIGN_VARIABLES).sort());
    expect([...IGNORED_VARIABLES].sort()).toEqual(Object.keys(FOREIGN_VARIABLES).sort());
  });

  it('describes each default for a docs page', () => {
    const byId = Object.fromEntries(reference.map((r) => [r.id, r]));
    expect(byId['region']).toMatchObject({ flag: '--region', fileKeys: ['region', 'roles[].region'], env: ['AWS_REGION', 'AWS_DEFAULT_REGION'] });
    expect(byId['region']!.default).toContain('us-east-1 for aws');
    expect(byId['listen']).toMatchObject({ precedence: 'flag > file', default: '127.0.0.1:8170' });
    expect(byId['roleArn']).toMatchObject({ precedence: 'flag > env', ignores: ['ALIBABA_CLOUD_ROLE_ARN', 'TKE_ROLE_ARN'] });
    expect(byId['httpsProxy']).toMatchObject({ precedence: 'env', env: ['HTTPS_PROXY', 'https_proxy'] });
  });
});
