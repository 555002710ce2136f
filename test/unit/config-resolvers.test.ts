import { describe, expect, it } from 'vitest';
import type { RoleConfig, TokenSourceChoice } from '../../src/config/config.js';
import type { FileConfig } from '../../src/config/file-schema.js';
import { type Layers, numberFlag, parseCommandFlag, pickSetting } from '../../src/config/layers.js';
import { adminListener, containerSecret, credentialListeners, hostAllowList, imdsOptions } from '../../src/config/resolve-listeners.js';
import { resolveLogging } from '../../src/config/resolve-logging.js';
import { resolveProxies } from '../../src/config/resolve-proxies.js';
import { checkRole, type RawRole, rawRoles, resolveRoles } from '../../src/config/resolve-roles.js';
import { partitionHomeRegion, resolveRoleRegion, resolveStsConnection } from '../../src/config/resolve-sts.js';
import { type RoleToken, resolveTokenSource, roleTokenDetector } from '../../src/config/resolve-token-source.js';
import type { ServeFlags } from '../../src/config/settings.js';

const ARN = 'arn:aws:iam::111122223333:role/app';
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function layers(parts: { flags?: ServeFlags; env?: Record<string, string>; file?: FileConfig } = {}): Layers {
  return { flags: parts.flags ?? {}, env: parts.env ?? {}, file: parts.file ?? {}, fileOrigin: parts.file ? 'config file /c.yaml' : 'config file' };
}

function files(map: Record<string, string>): (path: string) => string {
  return (path) => {
    const text = map[path];
    if (text === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    return text;
  };
}

const FILE_TOKEN: TokenSourceChoice = { source: { kind: 'file', path: '/t', platform: 'configured' }, reason: 'test', notes: [] };
const findsToken = () => FILE_TOKEN;
const role = (name: string): RoleConfig => ({
  cloud: 'aws',
  name,
  roleArn: ARN,
  accountId: '111122223333',
  token: FILE_TOKEN,
  sessionName: 's1',
  region: 'eu-west-1',
});

describe('pickSetting reads the layers in the order of the table', () => {
  it('takes the flag, then the file, then each variable in order', () => {
    const env = { AWS_REGION: 'eu-west-1', AWS_DEFAULT_REGION: 'eu-west-2' };
    const file = { region: 'ap-east-1' };
    expect(pickSetting('region', layers({ flags: { region: 'us-west-2' }, env, file }))).toEqual({ value: 'us-west-2', origin: '--region' });
    expect(pickSetting('region', layers({ env, file }))).toEqual({ value: 'ap-east-1', origin: 'config file /c.yaml' });
    expect(pickSetting('region', layers({ env }))).toEqual({ value: 'eu-west-1', origin: 'env AWS_REGION' });
    expect(pickSetting('region', layers({ env: { AWS_DEFAULT_REGION: 'eu-west-2' } }))).toEqual({ value: 'eu-west-2', origin: 'env AWS_DEFAULT_REGION' });
  });

  it('counts an empty string or an empty repeated flag as unset', () => {
    const blank = layers({ flags: { region: '' }, file: { region: '' }, env: { AWS_REGION: '', AWS_DEFAULT_REGION: 'x' } });
    expect(pickSetting('region', blank)?.origin).toBe('env AWS_DEFAULT_REGION');
    expect(pickSetting('listen', layers({ flags: { listen: [] }, file: { listen: ['127.0.0.1:1'] } }))?.origin).toBe('config file /c.yaml');
  });

  it('reads no layer the table does not list', () => {
    // --role-arn and AWS_ROLE_ARN only: a role ARN at the top of the file is not a key.
    expect(pickSetting('roleArn', layers({ env: { AWS_ROLE_ARN: ARN } }))?.origin).toBe('env AWS_ROLE_ARN');
    expect(pickSetting('tokenFile', layers({ env: { AWS_WEB_IDENTITY_TOKEN_FILE: '/w' } }))).toBeUndefined();
    expect(pickSetting('config', layers({ env: { CROSSCRED_CONFIG: '/c.yaml' } }))).toEqual({ value: '/c.yaml', origin: 'env CROSSCRED_CONFIG' });
  });

  it('takes a false switch as set: it wins over the file', () => {
    const both = layers({ flags: { 'allow-remote': false }, file: { allowRemote: true } });
    expect(pickSetting('allowRemote', both)).toEqual({ value: false, origin: '--allow-remote' });
  });

  it('parses numbers and commands from flags', () => {
    expect(numberFlag(' 3600 ')).toBe(3600);
    expect(numberFlag('1.5')).toBe(1.5);
    expect(numberFlag('90O')).toBeNaN();
    expect(numberFlag('')).toBeNaN();
    expect(parseCommandFlag(' /bin/tok ')).toEqual(['/bin/tok']);
    expect(parseCommandFlag('["/bin/tok", "-v"]')).toEqual(['/bin/tok', '-v']);
    for (const bad of ['', '[]', '[1]', '["a", ""]', '[oops']) expect(parseCommandFlag(bad), bad).toEqual([]);
  });
});

describe('resolveTokenSource', () => {
  it('applies the defaults of the table', () => {
    const { value, problems } = resolveTokenSource(layers(), files({}));
    expect(problems).toEqual([]);
    expect(value).toEqual({
      commandTimeoutMs: 10_000,
      commandEnv: [],
      expirationSeconds: 3_600,
      alibabaAttestation: 'ecs-identity',
      serviceAccountDir: '/var/run/secrets/kubernetes.io/serviceaccount',
      awsOutbound: { signingAlgorithm: 'RS256', durationSeconds: 300 },
    });
  });

  it('assembles the issuer connection, its CA read at once', () => {
    const flags = { 'issuer-url': 'https://issuer.example.com', 'issuer-token-endpoint': 'https://issuer.example.com/t', 'issuer-ca-bundle': '/ca.pem' };
    const { value, problems } = resolveTokenSource(layers({ flags }), files({ '/ca.pem': PEM }));
    expect(problems).toEqual([]);
    expect(value.issuer).toEqual({
      value: { url: 'https://issuer.example.com', tokenEndpointUrl: 'https://issuer.example.com/t', caBundlePath: '/ca.pem', caBundle: PEM },
      origin: '--issuer-url',
    });
  });

  it('checks the shared settings in a fixed order, naming the flag and origin', () => {
    const file: FileConfig = { tokenCommandTimeoutMs: 50, tokenExpirationSeconds: 599, tokenAudience: 'a b', issuerCaBundle: '/not-pem' };
    const flags = { 'token-source': 'magic', 'token-command': '[]', 'cloud-sts-endpoint': 'https://sts.aliyuncs.com/path' };
    const { problems } = resolveTokenSource(layers({ flags, file }), files({ '/not-pem': 'hello' }));
    expect(problems).toEqual([
      'token-source (--token-source): "magic" is not one of auto, file, exec, kubernetes, alibaba-ecs, tencent-cvm, aws-outbound',
      'token-command (--token-command): must name a program: a path, or a JSON array ["program", "arg", …]',
      'token-command-timeout-ms (config file /c.yaml): must be a whole number of milliseconds from 100 to 120000',
      'token-audience (config file /c.yaml): must be 1-256 printable characters without spaces',
      'token-expiration-seconds (config file /c.yaml): must be a whole number of seconds from 600 (the Kubernetes minimum) to 86400',
      'issuer-ca-bundle (config file /c.yaml): /not-pem holds no PEM certificate',
      'cloud-sts-endpoint (--cloud-sts-endpoint): must be just a scheme and host, such as https://sts.cn-hangzhou.aliyuncs.com (no path, query or user)',
    ]);
  });
});

describe('roleTokenDetector', () => {
  const settings = resolveTokenSource(layers(), files({})).value;
  const noCluster = () => ({ missing: ['KUBERNETES_SERVICE_HOST'] });

  it('detects from the role token settings, the environment, and the shared settings', () => {
    const detect = roleTokenDetector(settings, { AWS_WEB_IDENTITY_TOKEN_FILE: '/w' }, noCluster);
    expect(detect({})).toMatchObject({ source: { kind: 'file', path: '/w', platform: 'aws' } });
    const command: RoleToken = { tokenCommand: { value: ['/bin/tok'], origin: '--token-command' } };
    expect(detect(command)).toMatchObject({ source: { kind: 'exec', argv: ['/bin/tok'], timeoutMs: 10_000 } });
  });

  it("gives a VM source the issuer with the role's audience", () => {
    const withIssuer = resolveTokenSource(layers({ flags: { 'issuer-url': 'https://i.example.com' } }), files({})).value;
    const detect = roleTokenDetector(withIssuer, {}, noCluster);
    const choice = detect({ tokenSource: { value: 'tencent-cvm', origin: '--token-source' }, tokenAudience: { value: 'aud-x', origin: 'f' } });
    expect(choice).toMatchObject({ source: { kind: 'vm-issuer', cloud: 'tencent-cvm', issuer: { url: 'https://i.example.com', audience: 'aud-x' } } });
  });

  it('adds the hint of TOKEN_SOURCE_NOT_FOUND to a problem', () => {
    const problem = roleTokenDetector(settings, {}, noCluster)({});
    expect(problem).toMatchObject({ problem: expect.stringMatching(/^found no web-identity token; .*\(set AWS_WEB_IDENTITY_TOKEN_FILE/) });
  });
});

describe('rawRoles: what a role of the file inherits', () => {
  it('builds the one role of flags and environment from every role setting that is set', () => {
    const { value } = rawRoles(layers({ flags: { 'role-name': 'n' }, env: { AWS_ROLE_ARN: ARN, AWS_ROLE_SESSION_NAME: 's1' } }));
    expect(value).toEqual([
      {
        index: 0,
        origin: 'flags and environment',
        fromFile: false,
        settings: {
          roleArn: { value: ARN, origin: 'env AWS_ROLE_ARN' },
          roleName: { value: 'n', origin: '--role-name' },
          sessionName: { value: 's1', origin: 'env AWS_ROLE_SESSION_NAME' },
        },
      },
    ]);
  });

  it('inherits audience, session, duration, region and endpoint always; token kinds only when the role names none', () => {
    const file: FileConfig = {
      tokenFile: '/top',
      tokenAudience: 'top-aud',
      roles: [{ roleArn: ARN }, { roleArn: ARN, tokenCommand: ['/bin/tok'], region: 'us-east-2' }],
    };
    const { value } = rawRoles(layers({ file, env: { AWS_REGION: 'eu-west-1', AWS_ROLE_ARN: 'ignored' } }));
    expect(value[0]!.settings).toEqual({
      roleArn: { value: ARN, origin: 'config file /c.yaml roles[0]' },
      tokenFile: { value: '/top', origin: 'config file /c.yaml' },
      tokenAudience: { value: 'top-aud', origin: 'config file /c.yaml' },
      region: { value: 'eu-west-1', origin: 'env AWS_REGION' },
    });
    expect(value[1]!.settings).toEqual({
      roleArn: { value: ARN, origin: 'config file /c.yaml roles[1]' },
      tokenCommand: { value: ['/bin/tok'], origin: 'config file /c.yaml roles[1]' },
      tokenAudience: { value: 'top-aud', origin: 'config file /c.yaml' },
      region: { value: 'us-east-2', origin: 'config file /c.yaml roles[1]' },
    });
  });

  it('refuses --role-arn and --role-name next to roles in the file', () => {
    const { problems } = rawRoles(layers({ flags: { 'role-arn': ARN, 'role-name': 'x' }, file: { roles: [{ roleArn: ARN }] } }));
    expect(problems).toEqual([
      '--role-arn (flag): cannot be combined with the roles listed in config file /c.yaml; edit the file instead',
      '--role-name (flag): cannot be combined with the roles listed in config file /c.yaml; edit the file instead',
    ]);
  });
});

describe('checkRole', () => {
  const raw = (settings: RawRole['settings'], fromFile = false): RawRole => ({ index: 1, origin: 'here', fromFile, settings });
  const arn = { value: ARN, origin: '--role-arn' };

  it('builds a role from an ARN alone: named after it, session from the host, region from the partition', () => {
    const { value, problems } = checkRole(raw({ roleArn: arn }), { detectToken: findsToken, hostname: 'node-1' }, new Set());
    expect(problems).toEqual([]);
    expect(value).toEqual({
      cloud: 'aws',
      name: 'app',
      roleArn: ARN,
      accountId: '111122223333',
      token: FILE_TOKEN,
      sessionName: 'crosscred-node-1',
      region: 'us-east-1',
    });
  });

  it('names roles[<index>].<key> for a role of the file', () => {
    const { problems } = checkRole(raw({ roleArn: arn, durationSeconds: { value: 60, origin: 'f' } }, true), { detectToken: findsToken }, new Set());
    expect(problems).toEqual(['roles[1].durationSeconds (f): 60 must be a whole number of seconds from 900 to 43200']);
  });

  it('refuses a name used twice', () => {
    const seen = new Set(['app']);
    expect(checkRole(raw({ roleArn: arn }), { detectToken: findsToken }, seen).problems).toEqual([
      'name (--role-arn): role name "app" is used twice; give each role a distinct name',
    ]);
  });

  it('builds no role without an ARN', () => {
    expect(checkRole(raw({}), { detectToken: findsToken }, new Set())).toEqual({
      value: undefined,
      problems: ['roleArn (here): no role to assume: set AWS_ROLE_ARN, --role-arn, or roles in a --config file'],
    });
  });

  it('builds every role of the file, in order', () => {
    const file: FileConfig = { roles: [{ roleArn: ARN }, { roleArn: 'arn:aws:iam::444455556666:role/b' }] };
    expect(resolveRoles(layers({ file }), { detectToken: findsToken }).value.map((r) => r.name)).toEqual(['app', 'b']);
  });
});

describe('STS: region and connection', () => {
  it("takes a role's region, else its partition's home region", () => {
    expect(partitionHomeRegion('arn:aws-cn:iam::111122223333:role/x')).toBe('cn-north-1');
    expect(partitionHomeRegion('arn:aws-iso:iam::111122223333:role/x')).toBeUndefined();
    expect(resolveRoleRegion(undefined, ARN, 'region', 'r')).toEqual({ value: 'us-east-1', problems: [] });
    expect(resolveRoleRegion(undefined, 'arn:aws-iso:iam::1:role/x', 'region', 'r').problems[0]).toMatch(/^region \(r\): no region/);
    expect(resolveRoleRegion({ value: 'Mars', origin: '--region' }, ARN, 'region', 'r').problems).toEqual([
      'region (--region): "Mars" is not an AWS region name such as eu-west-1',
    ]);
  });

  it('defaults the timeouts and names the value out of range', () => {
    expect(resolveStsConnection(layers(), files({}))).toEqual({ value: { connectTimeoutMs: 3_000, responseTimeoutMs: 10_000 }, problems: [] });
    const flags = { 'sts-connect-timeout-ms': '99', 'sts-timeout-ms': 'soon', 'ca-bundle': '/missing.pem' };
    expect(resolveStsConnection(layers({ flags }), files({})).problems).toEqual([
      'sts-connect-timeout-ms (--sts-connect-timeout-ms): 99 must be a whole number of milliseconds from 100 to 120000',
      'sts-timeout-ms (--sts-timeout-ms): NaN must be a whole number of milliseconds from 100 to 120000',
      'ca-bundle (--ca-bundle): cannot read /missing.pem (ENOENT)',
    ]);
  });

  it('reads the CA bundle named by AWS_CA_BUNDLE', () => {
    const { value } = resolveStsConnection(layers({ env: { AWS_CA_BUNDLE: '/ca.pem' } }), files({ '/ca.pem': PEM }));
    expect(value).toMatchObject({ caBundlePath: '/ca.pem', caBundle: PEM });
  });
});

describe('listeners', () => {
  it('binds the default listener to the only role', () => {
    expect(credentialListeners(layers(), [role('app')])).toEqual({ value: [{ host: '127.0.0.1', port: 8170, role: 'app' }], problems: [] });
  });

  it('lets port 0 repeat, but no other address', () => {
    const flags = { listen: ['127.0.0.1:0', '127.0.0.1:0', '127.0.0.1:1', '127.0.0.1:1'] };
    expect(credentialListeners(layers({ flags }), [role('app')]).problems).toEqual(['listen (--listen): 127.0.0.1:1 is listed twice']);
  });

  it("takes a file listener's role key, or its =ROLE", () => {
    const file: FileConfig = { listen: [{ address: '127.0.0.1:1', role: 'b' }, '127.0.0.1:2=a'] };
    expect(credentialListeners(layers({ file }), [role('a'), role('b')]).value.map((l) => l.role)).toEqual(['b', 'a']);
  });

  it('lets --allow-remote from the file open a reachable address', () => {
    expect(credentialListeners(layers({ flags: { listen: ['0.0.0.0:1'] }, file: { allowRemote: true } }), [role('a')]).problems).toEqual([]);
  });

  it('turns the admin listener off, takes the default, refuses a role', () => {
    expect(adminListener(layers({ flags: { 'admin-listen': 'off' } })).value).toBeNull();
    expect(adminListener(layers()).value).toEqual({ host: '127.0.0.1', port: 8171 });
    expect(adminListener(layers({ file: { adminListen: '127.0.0.1:9=a' } })).problems).toEqual(['admin-listen (config file /c.yaml): takes no role']);
    expect(adminListener(layers({ flags: { 'admin-listen': 'x' } })).problems[0]).toMatch(/^admin-listen \(--admin-listen\): .*, or "off"$/);
  });

  it('trims the container secret path and refuses a blank one', () => {
    expect(containerSecret(layers({ flags: { 'auth-token-file': ' /run/a ' } }))).toEqual({ value: '/run/a', problems: [] });
    expect(containerSecret(layers({ file: { authTokenFile: '  ' } })).problems).toEqual(['auth-token-file (config file /c.yaml): is empty']);
    expect(containerSecret(layers()).value).toBeUndefined();
  });

  it('disables IMDS only with a container secret, and never with IMDSv1', () => {
    expect(imdsOptions(layers({ file: { disableImds: true } }), true)).toEqual({ value: { allowImdsV1: false, imdsEnabled: false }, problems: [] });
    expect(imdsOptions(layers({ file: { disableImds: true, allowImdsV1: true } }), false).problems).toEqual([
      "disable-imds (config file /c.yaml): leaves nothing to serve without --auth-token-file (the container endpoint), or an Alibaba role's credentials URI on a loopback listener",
      'disable-imds (config file /c.yaml): contradicts --allow-imdsv1',
    ]);
  });

  it('lower-cases the Host allow-list and refuses what is not a host name', () => {
    expect(hostAllowList(layers({ flags: { 'allowed-host': ['A.Example', '[::1]'] } }))).toEqual({ value: ['a.example', '[::1]'], problems: [] });
    expect(hostAllowList(layers({ file: { allowedHosts: ['a b'] } })).problems).toEqual(['allowed-host (config file /c.yaml): "a b" is not a host name']);
  });
});

describe('proxies and logging', () => {
  it('reads either spelling, upper case first, and adds http:// to a bare host', () => {
    const env = { HTTPS_PROXY: '', https_proxy: 'proxy:3128', http_proxy: 'http://h:1', NO_PROXY: '', no_proxy: 'a,b' };
    expect(resolveProxies(layers({ env }))).toEqual({ value: { httpsProxy: 'http://proxy:3128', httpProxy: 'http://h:1', noProxy: 'a,b' }, problems: [] });
  });

  it('names a bad proxy by its variable, never by its value', () => {
    const { problems } = resolveProxies(layers({ env: { http_proxy: 'socks5://user:secret@p:1' } }));
    expect(problems).toEqual([
      'http_proxy (env http_proxy): uses socks5; only http:// and https:// proxies are supported (the value is not shown: it may hold a password)',
    ]);
  });

  it('takes the log level from the flag, the file, then CROSSCRED_LOG_LEVEL, else info', () => {
    expect(resolveLogging(layers())).toEqual({ value: 'info', problems: [] });
    expect(resolveLogging(layers({ env: { CROSSCRED_LOG_LEVEL: 'debug' }, file: { logLevel: 'warn' } })).value).toBe('warn');
    expect(resolveLogging(layers({ env: { CROSSCRED_LOG_LEVEL: 'loud' } })).problems).toEqual([
      'log-level (env CROSSCRED_LOG_LEVEL): "loud" is not one of fatal, error, warn, info, debug, trace, silent',
    ]);
  });
});
