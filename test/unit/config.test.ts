import { describe, expect, it } from 'vitest';
import { type LoadInputs, loadConfig, type ServeFlags } from '../../src/config/load.js';
import { CrosscredError } from '../../src/core/errors.js';

const ARN = 'arn:aws:iam::111122223333:role/app';
const TOKEN_FILE = '/var/run/secrets/eks.amazonaws.com/serviceaccount/token';

/** The environment an EKS IRSA pod gets. */
const IRSA_ENV = {
  AWS_ROLE_ARN: ARN,
  AWS_WEB_IDENTITY_TOKEN_FILE: TOKEN_FILE,
  AWS_REGION: 'eu-west-1',
};

function load(options: { flags?: ServeFlags; env?: Record<string, string | undefined>; files?: Record<string, string>; hostname?: string } = {}) {
  const files = options.files ?? {};
  const inputs: LoadInputs = {
    flags: options.flags ?? {},
    env: options.env ?? {},
    hostname: options.hostname ?? 'node-1',
    readText: (path) => {
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return text;
    },
  };
  return loadConfig(inputs);
}

/** Loads, expecting CONFIG_INVALID, and returns the message. */
function configError(options: Parameters<typeof load>[0]): string {
  try {
    load(options);
  } catch (err) {
    expect(err).toBeInstanceOf(CrosscredError);
    expect((err as CrosscredError).code).toBe('CROSSCRED_ERR_CONFIG_INVALID');
    return (err as CrosscredError).message;
  }
  throw new Error('expected CROSSCRED_ERR_CONFIG_INVALID, but the configuration loaded');
}

function isDeeplyFrozen(value: unknown, path = 'config'): string[] {
  if (value === null || typeof value !== 'object') return [];
  const unfrozen = Object.isFrozen(value) ? [] : [path];
  for (const [k, v] of Object.entries(value)) unfrozen.push(...isDeeplyFrozen(v, `${path}.${k}`));
  return unfrozen;
}

const TWO_ROLES_YAML = `
region: eu-west-1
tokenFile: /var/run/token
roles:
  - roleArn: arn:aws:iam::111122223333:role/reader
  - name: writer
    roleArn: arn:aws:iam::444455556666:role/team/app-writer
    region: us-east-2
    durationSeconds: 7200
listen:
  - 127.0.0.1:8170=reader
  - address: 127.0.0.2:8170
    role: writer
  - "[::1]:8172=writer"
adminListen: 127.0.0.1:9000
allowedHosts: [Crosscred.Internal]
`;

describe('loadConfig from the IRSA environment alone', () => {
  it('builds one role named after the ARN, with default listeners and a derived session name', () => {
    const config = load({ env: IRSA_ENV, hostname: 'ip-10-0-0-1.eu-west-1.compute.internal' });
    expect(config.roles).toEqual([
      {
        cloud: 'aws',
        name: 'app',
        roleArn: ARN,
        accountId: '111122223333',
        token: {
          source: { kind: 'file', path: TOKEN_FILE, platform: 'aws' },
          reason: 'AWS_WEB_IDENTITY_TOKEN_FILE is set (EKS IRSA or a projected ServiceAccount token)',
          notes: [],
        },
        sessionName: 'crosscred-ip-10-0-0-1.eu-west-1.compute.internal',
        region: 'eu-west-1',
      },
    ]);
    expect(config.listeners).toEqual([{ host: '127.0.0.1', port: 8170, role: 'app' }]);
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 8171 });
    expect(config.allowImdsV1).toBe(false);
    expect(config.logLevel).toBe('info');
    expect(config.sts).toEqual({ connectTimeoutMs: 3_000, responseTimeoutMs: 10_000 });
  });

  it('sanitizes the host name into a valid session name and caps it at 64 characters', () => {
    expect(load({ env: IRSA_ENV, hostname: 'my host/with:odd*chars' }).roles[0]!.sessionName).toBe('crosscred-my-host-with-odd-chars');
    const long = load({ env: IRSA_ENV, hostname: 'h'.repeat(100) }).roles[0]!.sessionName;
    expect(long).toHaveLength(64);
    expect(long).toMatch(/^crosscred-h+$/);
  });

  it('names the role after the last segment of an ARN with a path', () => {
    expect(load({ env: { ...IRSA_ENV, AWS_ROLE_ARN: 'arn:aws:iam::111122223333:role/team/sub/app-x' } }).roles[0]!.name).toBe('app-x');
  });

  it('uses AWS_ROLE_SESSION_NAME when set', () => {
    expect(load({ env: { ...IRSA_ENV, AWS_ROLE_SESSION_NAME: 'my-session' } }).roles[0]!.sessionName).toBe('my-session');
  });

  it('falls back to AWS_DEFAULT_REGION, but prefers AWS_REGION', () => {
    const { AWS_REGION: _unused, ...withoutRegion } = IRSA_ENV;
    expect(load({ env: { ...withoutRegion, AWS_DEFAULT_REGION: 'ap-southeast-2' } }).roles[0]!.region).toBe('ap-southeast-2');
    expect(load({ env: { ...IRSA_ENV, AWS_DEFAULT_REGION: 'ap-southeast-2' } }).roles[0]!.region).toBe('eu-west-1');
  });

  it('treats an empty variable as unset', () => {
    expect(load({ env: { ...IRSA_ENV, AWS_REGION: '', AWS_DEFAULT_REGION: 'us-west-2' } }).roles[0]!.region).toBe('us-west-2');
  });

  it('prefers AWS_ENDPOINT_URL_STS over AWS_ENDPOINT_URL', () => {
    const env = { ...IRSA_ENV, AWS_ENDPOINT_URL: 'https://general.example.com', AWS_ENDPOINT_URL_STS: 'https://sts.example.com' };
    expect(load({ env }).roles[0]!.stsEndpoint).toBe('https://sts.example.com');
    expect(load({ env: { ...IRSA_ENV, AWS_ENDPOINT_URL: 'https://general.example.com' } }).roles[0]!.stsEndpoint).toBe('https://general.example.com');
  });

  it('defaults the region to us-east-1 when only an STS endpoint is given', () => {
    const { AWS_REGION: _unused, ...withoutRegion } = IRSA_ENV;
    expect(load({ env: { ...withoutRegion, AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:9999' } }).roles[0]!.region).toBe('us-east-1');
  });

  it('captures the proxy variables, upper case first', () => {
    const config = load({ env: { ...IRSA_ENV, HTTPS_PROXY: 'http://proxy:3128', http_proxy: 'http://lower:3128', no_proxy: '169.254.169.254,localhost' } });
    expect(config.sts).toMatchObject({ httpsProxy: 'http://proxy:3128', httpProxy: 'http://lower:3128', noProxy: '169.254.169.254,localhost' });
    const upperWins = load({ env: { ...IRSA_ENV, HTTPS_PROXY: 'http://upper:1', https_proxy: 'http://lower:2' } });
    expect(upperWins.sts.httpsProxy).toBe('http://upper:1');
  });
});

describe('loadConfig precedence', () => {
  it('lets flags override the environment', () => {
    const config = load({
      env: IRSA_ENV,
      flags: {
        'role-arn': 'arn:aws:iam::999988887777:role/other',
        'token-file': '/tmp/token',
        region: 'us-west-2',
        'role-session-name': 'from-flag',
        'role-name': 'custom',
        'duration-seconds': '3600',
        listen: ['0.0.0.0:9170'],
        'allow-remote': true,
        'admin-listen': 'off',
        'allow-imdsv1': true,
        'allowed-host': ['Daemon.Local'],
        'log-level': 'debug',
        'sts-endpoint': 'https://sts.us-west-2.amazonaws.com',
      },
    });
    expect(config.roles).toEqual([
      {
        cloud: 'aws',
        name: 'custom',
        roleArn: 'arn:aws:iam::999988887777:role/other',
        accountId: '999988887777',
        token: {
          source: { kind: 'file', path: '/tmp/token', platform: 'configured' },
          reason: 'the token file is named by --token-file',
          notes: ['AWS_WEB_IDENTITY_TOKEN_FILE is set too, but not used.'],
        },
        sessionName: 'from-flag',
        region: 'us-west-2',
        durationSeconds: 3600,
        stsEndpoint: 'https://sts.us-west-2.amazonaws.com',
      },
    ]);
    expect(config.listeners).toEqual([{ host: '0.0.0.0', port: 9170, role: 'custom' }]);
    expect(config.admin).toBeNull();
    expect(config.allowImdsV1).toBe(true);
    expect(config.allowedHosts).toEqual(['daemon.local']);
    expect(config.logLevel).toBe('debug');
  });

  it('lets the config file override the environment and flags override the file', () => {
    const files = { '/etc/crosscred.yaml': 'region: ap-northeast-1\nlogLevel: warn\n' };
    const fromFile = load({ env: { ...IRSA_ENV, CROSSCRED_CONFIG: '/etc/crosscred.yaml' }, files });
    expect(fromFile.roles[0]!.region).toBe('ap-northeast-1');
    expect(fromFile.logLevel).toBe('warn');
    const fromFlag = load({ env: IRSA_ENV, flags: { config: '/etc/crosscred.yaml', region: 'sa-east-1' }, files });
    expect(fromFlag.roles[0]!.region).toBe('sa-east-1');
  });
});

describe('loadConfig from a YAML file with several roles', () => {
  const files = { '/etc/crosscred.yaml': TWO_ROLES_YAML };

  it('builds both roles, inheriting shared settings unless a role overrides them', () => {
    const config = load({ flags: { config: '/etc/crosscred.yaml' }, files, hostname: 'node-7' });
    const fromFile = {
      source: { kind: 'file', path: '/var/run/token', platform: 'configured' },
      reason: 'the token file is named by config file /etc/crosscred.yaml',
      notes: [],
    };
    expect(config.roles).toEqual([
      {
        cloud: 'aws',
        name: 'reader',
        roleArn: 'arn:aws:iam::111122223333:role/reader',
        accountId: '111122223333',
        token: fromFile,
        sessionName: 'crosscred-node-7',
        region: 'eu-west-1',
      },
      {
        cloud: 'aws',
        name: 'writer',
        roleArn: 'arn:aws:iam::444455556666:role/team/app-writer',
        accountId: '444455556666',
        token: fromFile,
        sessionName: 'crosscred-node-7',
        region: 'us-east-2',
        durationSeconds: 7200,
      },
    ]);
  });

  it('binds each listener to the role it names', () => {
    const config = load({ flags: { config: '/etc/crosscred.yaml' }, files });
    expect(config.listeners).toEqual([
      { host: '127.0.0.1', port: 8170, role: 'reader' },
      { host: '127.0.0.2', port: 8170, role: 'writer' },
      { host: '::1', port: 8172, role: 'writer' },
    ]);
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(config.allowedHosts).toEqual(['crosscred.internal']);
  });

  it('accepts the same configuration written as JSON', () => {
    const json = JSON.stringify({ region: 'eu-west-1', tokenFile: '/t', roles: [{ roleArn: ARN }] });
    expect(load({ flags: { config: '/c.json' }, files: { '/c.json': json } }).roles[0]!.name).toBe('app');
  });

  it('returns a deeply frozen object', () => {
    const config = load({ flags: { config: '/etc/crosscred.yaml' }, files });
    expect(isDeeplyFrozen(config)).toEqual([]);
    expect(Object.isFrozen(config.roles[1])).toBe(true);
    expect(Object.isFrozen(config.listeners)).toBe(true);
    expect(Object.isFrozen(config.sts)).toBe(true);
    expect(() => (config.roles as unknown as unknown[]).push({})).toThrow(TypeError);
  });

  it('returns a deeply frozen object from the environment too', () => {
    expect(isDeeplyFrozen(load({ env: { ...IRSA_ENV, HTTPS_PROXY: 'http://p:1' } }))).toEqual([]);
  });
});

describe('loadConfig errors', () => {
  it('checks the crosscred issuer settings: URL, CA bundle, Alibaba attestation kind', () => {
    const { AWS_WEB_IDENTITY_TOKEN_FILE: _unused, ...env } = IRSA_ENV;
    const message = configError({ env, flags: { 'issuer-url': 'ftp://issuer', 'issuer-ca-bundle': '/missing.pem', 'alibaba-attestation': 'pkcs7' } });
    expect(message).toContain('issuer-url (--issuer-url)');
    expect(message).toContain('issuer-ca-bundle (--issuer-ca-bundle): cannot read /missing.pem');
    expect(message).toContain('alibaba-attestation (--alibaba-attestation): "pkcs7" is not one of ecs-identity, ram-role');
    const config = load({ env, flags: { 'issuer-url': 'https://issuer.example.com', 'token-source': 'alibaba-ecs', 'alibaba-attestation': 'ram-role' } });
    expect(config.roles[0]!.token.source).toEqual({
      kind: 'vm-issuer',
      cloud: 'alibaba-ecs',
      issuer: { url: 'https://issuer.example.com', audience: 'sts.amazonaws.com' },
      alibabaAttestation: 'ram-role',
    });
    expect(configError({ env, flags: { 'issuer-url': 'https://issuer.example.com', 'cloud-sts-endpoint': 'https://sts.aliyuncs.com/x?y' } })).toContain(
      'cloud-sts-endpoint (--cloud-sts-endpoint): must be just a scheme and host',
    );
    const regional = load({
      env,
      flags: {
        'issuer-url': 'https://issuer.example.com',
        'token-source': 'tencent-cvm',
        'cloud-sts-endpoint': 'https://sts.ap-guangzhou.tencentcloudapi.com',
      },
    });
    expect(regional.roles[0]!.token.source).toMatchObject({
      kind: 'vm-issuer',
      cloud: 'tencent-cvm',
      cloudStsEndpoint: 'https://sts.ap-guangzhou.tencentcloudapi.com',
    });
  });

  it('refuses --disable-imds without a container endpoint to serve instead, or together with --allow-imdsv1', () => {
    expect(configError({ env: IRSA_ENV, flags: { 'disable-imds': true } })).toContain(
      'disable-imds (--disable-imds): leaves nothing to serve without --auth-token-file',
    );
    expect(configError({ env: IRSA_ENV, flags: { 'disable-imds': true, 'auth-token-file': '/run/a', 'allow-imdsv1': true } })).toContain(
      'disable-imds (--disable-imds): contradicts --allow-imdsv1',
    );
    expect(load({ env: IRSA_ENV, flags: { 'disable-imds': true, 'auth-token-file': '/run/a' } }).imdsEnabled).toBe(false);
    expect(load({ env: IRSA_ENV }).imdsEnabled).toBe(true);
  });

  it('names the field and origin of a bad role ARN', () => {
    expect(configError({ env: { ...IRSA_ENV, AWS_ROLE_ARN: 'arn:aws:iam::12345:role/x' } })).toContain('roleArn (env AWS_ROLE_ARN)');
    expect(configError({ env: IRSA_ENV, flags: { 'role-arn': 'arn:aws:iam::111122223333:user/bob' } })).toContain('roleArn (--role-arn)');
  });

  it('reports a missing role ARN', () => {
    const { AWS_ROLE_ARN: _unused, ...env } = IRSA_ENV;
    expect(configError({ env })).toMatch(/roleArn \(flags and environment\): no role to assume/);
  });

  it("defaults a missing region to the role partition's home region, so only the role ARN is needed", () => {
    const { AWS_REGION: _unused, ...env } = IRSA_ENV;
    expect(load({ env }).roles[0]!.region).toBe('us-east-1');
    expect(load({ env: { ...env, AWS_ROLE_ARN: 'arn:aws-cn:iam::111122223333:role/app' } }).roles[0]!.region).toBe('cn-north-1');
    expect(load({ env: { ...env, AWS_ROLE_ARN: 'arn:aws-us-gov:iam::111122223333:role/app' } }).roles[0]!.region).toBe('us-gov-west-1');
  });

  it('refuses a malformed region and names its origin', () => {
    expect(configError({ env: { ...IRSA_ENV, AWS_REGION: 'Europe' } })).toContain('region (env AWS_REGION)');
  });

  it('refuses durations of 899 and 43201 seconds but accepts 900 and 43200', () => {
    expect(configError({ env: IRSA_ENV, flags: { 'duration-seconds': '899' } })).toContain('durationSeconds (--duration-seconds): 899');
    expect(configError({ env: IRSA_ENV, flags: { 'duration-seconds': '43201' } })).toContain('durationSeconds (--duration-seconds): 43201');
    expect(configError({ env: IRSA_ENV, flags: { 'duration-seconds': '90O' } })).toContain('durationSeconds (--duration-seconds)');
    expect(load({ env: IRSA_ENV, flags: { 'duration-seconds': '900' } }).roles[0]!.durationSeconds).toBe(900);
    expect(load({ env: IRSA_ENV, flags: { 'duration-seconds': '43200' } }).roles[0]!.durationSeconds).toBe(43_200);
  });

  it('names the role index for a bad duration in the file', () => {
    const yaml =
      'region: eu-west-1\ntokenFile: /t\nroles:\n  - roleArn: arn:aws:iam::111122223333:role/a\n  - roleArn: arn:aws:iam::111122223333:role/b\n    durationSeconds: 43201\n';
    expect(configError({ flags: { config: '/c.yaml' }, files: { '/c.yaml': yaml } })).toContain(
      'roles[1].durationSeconds (config file /c.yaml roles[1]): 43201',
    );
  });

  it('refuses a bad session name', () => {
    expect(configError({ env: IRSA_ENV, flags: { 'role-session-name': 'has space' } })).toContain('sessionName (--role-session-name)');
    expect(configError({ env: { ...IRSA_ENV, AWS_ROLE_SESSION_NAME: 'x' } })).toContain('sessionName (env AWS_ROLE_SESSION_NAME)');
  });

  it('refuses duplicate role names', () => {
    const yaml =
      'region: eu-west-1\ntokenFile: /t\nroles:\n  - roleArn: arn:aws:iam::111122223333:role/app\n  - roleArn: arn:aws:iam::444455556666:role/app\nlisten: ["127.0.0.1:8170=app"]\n';
    const message = configError({ flags: { config: '/c.yaml' }, files: { '/c.yaml': yaml } });
    expect(message).toContain('roles[1].name');
    expect(message).toContain('"app" is used twice');
  });

  it('refuses a listener that names an unknown role', () => {
    const message = configError({ env: IRSA_ENV, flags: { listen: ['127.0.0.1:8170=nope'] } });
    expect(message).toContain('listen (--listen)');
    expect(message).toContain('"nope"');
  });

  it('refuses a listener without a role when several roles are configured', () => {
    const yaml =
      'region: eu-west-1\ntokenFile: /t\nroles:\n  - roleArn: arn:aws:iam::111122223333:role/a\n  - roleArn: arn:aws:iam::111122223333:role/b\nlisten: ["127.0.0.1:8170"]\n';
    expect(configError({ flags: { config: '/c.yaml' }, files: { '/c.yaml': yaml } })).toContain('listen (config file /c.yaml): 127.0.0.1:8170 serves no role');
    // Without any listen setting, the default listener has the same problem.
    const noListen = yaml.replace(/listen:.*\n/, '');
    expect(configError({ flags: { config: '/c.yaml' }, files: { '/c.yaml': noListen } })).toContain('listen (default)');
  });

  it('refuses an unknown key in the file, naming it', () => {
    const message = configError({ env: IRSA_ENV, flags: { config: '/c.yaml' }, files: { '/c.yaml': 'regoin: eu-west-1\n' } });
    expect(message).toContain('/c.yaml');
    expect(message).toContain('regoin');
  });

  it('refuses an unknown key inside a role, naming its path', () => {
    const yaml = 'region: eu-west-1\ntokenFile: /t\nroles:\n  - roleArn: arn:aws:iam::111122223333:role/a\n    rolearn: typo\n';
    const message = configError({ flags: { config: '/c.yaml' }, files: { '/c.yaml': yaml } });
    expect(message).toContain('roles.0');
    expect(message).toContain('rolearn');
  });

  it('refuses invalid YAML', () => {
    const message = configError({ env: IRSA_ENV, flags: { config: '/c.yaml' }, files: { '/c.yaml': 'roles: [\n  - : :\n' } });
    expect(message).toContain('/c.yaml is not valid YAML or JSON');
  });

  it('reports an unreadable config file with its own code', () => {
    try {
      load({ env: IRSA_ENV, flags: { config: '/missing.yaml' } });
      expect.unreachable('the configuration loaded');
    } catch (err) {
      expect((err as CrosscredError).code).toBe('CROSSCRED_ERR_CONFIG_FILE_UNREADABLE');
      expect((err as CrosscredError).message).toContain('/missing.yaml');
    }
  });

  it('reports all problems together', () => {
    const message = configError({
      env: { AWS_ROLE_ARN: 'not-an-arn' },
      flags: { 'duration-seconds': '60', 'role-session-name': '!', listen: ['nowhere'], 'log-level': 'loud' },
    });
    for (const field of [
      'roleArn (env AWS_ROLE_ARN)',
      'tokenFile',
      'sessionName (--role-session-name)',
      'durationSeconds (--duration-seconds)',
      'region',
      'listen (--listen)',
      'log-level (--log-level)',
    ]) {
      expect(message).toContain(field);
    }
    expect(message.split('\n  - ').length - 1).toBeGreaterThanOrEqual(7);
  });

  it('refuses --role-arn combined with roles from a file', () => {
    const yaml = 'region: eu-west-1\ntokenFile: /t\nroles:\n  - roleArn: arn:aws:iam::111122223333:role/a\n';
    expect(configError({ flags: { config: '/c.yaml', 'role-arn': ARN }, files: { '/c.yaml': yaml } })).toContain('--role-arn (flag)');
  });

  it('refuses an STS endpoint that is not an http(s) URL or that carries credentials', () => {
    expect(configError({ env: { ...IRSA_ENV, AWS_ENDPOINT_URL_STS: 'ftp://sts.example.com' } })).toContain('stsEndpoint (env AWS_ENDPOINT_URL_STS)');
    expect(configError({ env: { ...IRSA_ENV, AWS_ENDPOINT_URL_STS: 'https://user:pw@sts.example.com' } })).toContain('must not contain credentials');
  });
});

describe('addresses and endpoints that would leak credentials', () => {
  it('refuses a listen address other machines can reach unless --allow-remote', () => {
    for (const listen of ['0.0.0.0:8170', '[::]:8170', '10.1.2.3:80', 'daemon.example:80']) {
      const message = configError({ env: IRSA_ENV, flags: { listen: [listen] } });
      expect(message, listen).toMatch(/listen \(--listen\): .*--allow-remote/);
      expect(load({ env: IRSA_ENV, flags: { listen: [listen], 'allow-remote': true } }).listeners).toHaveLength(1);
    }
  });

  it('accepts loopback and link-local addresses without it', () => {
    for (const listen of [
      '127.0.0.1:8170',
      '127.0.0.53:80',
      '[::1]:8170',
      'localhost:8170',
      '169.254.169.254:80',
      '169.254.170.2:80',
      '[fd00:ec2::254]:80',
      '[fe80::1]:80',
    ]) {
      expect(load({ env: IRSA_ENV, flags: { listen: [listen] } }).listeners, listen).toHaveLength(1);
    }
  });

  it('refuses a plain-http STS endpoint unless it is on loopback', () => {
    expect(configError({ env: IRSA_ENV, flags: { 'sts-endpoint': 'http://sts.internal.example' } })).toMatch(
      /stsEndpoint \(--sts-endpoint\): .*must use https/,
    );
    expect(load({ env: IRSA_ENV, flags: { 'sts-endpoint': 'http://127.0.0.1:4566' } }).roles[0]!.stsEndpoint).toBe('http://127.0.0.1:4566');
    expect(load({ env: IRSA_ENV, flags: { 'sts-endpoint': 'http://[::1]:4566' } }).roles[0]!.stsEndpoint).toBe('http://[::1]:4566');
  });

  it('refuses a malformed proxy URL without echoing it (it may hold a password)', () => {
    const message = configError({ env: { ...IRSA_ENV, HTTPS_PROXY: 'http://user:s3cret@[bad' } });
    expect(message).toMatch(/HTTPS_PROXY \(env HTTPS_PROXY\)/);
    expect(message).not.toContain('s3cret');
    expect(configError({ env: { ...IRSA_ENV, https_proxy: 'socks5://proxy:1080' } })).toMatch(/only http:\/\/ and https:\/\/ proxies/);
  });

  it('takes a proxy without a scheme as http://, and an empty upper-case variable as unset', () => {
    expect(load({ env: { ...IRSA_ENV, HTTPS_PROXY: 'proxy.internal:3128' } }).sts.httpsProxy).toBe('http://proxy.internal:3128');
    expect(load({ env: { ...IRSA_ENV, HTTPS_PROXY: '', https_proxy: 'http://p:1' } }).sts.httpsProxy).toBe('http://p:1');
  });
});

describe('token settings in a config file', () => {
  it('lets a role that names its own token source inherit none of the top-level kinds', () => {
    const yaml =
      'region: eu-west-1\ntokenCommand: ["/usr/bin/get-token"]\nroles:\n  - name: a\n    roleArn: arn:aws:iam::111122223333:role/a\n  - name: b\n    roleArn: arn:aws:iam::111122223333:role/b\n    tokenFile: /var/run/b-token\nlisten: ["127.0.0.1:8170=a"]\n';
    const config = load({ flags: { config: '/c.yaml' }, files: { '/c.yaml': yaml } });
    expect(config.roles[0]!.token.source).toEqual({ kind: 'exec', argv: ['/usr/bin/get-token'], timeoutMs: 10_000 });
    expect(config.roles[1]!.token.source).toEqual({ kind: 'file', path: '/var/run/b-token', platform: 'configured' });
  });
});

describe('--token-command-env', () => {
  it('passes the named variables to the command (flag, repeatable), and none when unset', () => {
    const flags: ServeFlags = { 'role-arn': ARN, region: 'eu-west-1', 'token-command': '/usr/bin/get-token' };
    const named = load({ flags: { ...flags, 'token-command-env': ['VENDOR_PROFILE', 'SSL_CERT_FILE'] } });
    expect(named.roles[0]!.token.source).toEqual({
      kind: 'exec',
      argv: ['/usr/bin/get-token'],
      timeoutMs: 10_000,
      passEnv: ['VENDOR_PROFILE', 'SSL_CERT_FILE'],
    });
    expect(load({ flags }).roles[0]!.token.source).not.toHaveProperty('passEnv');
  });

  it('reads tokenCommandEnv from the config file, for every role that runs a command', () => {
    const yaml = [
      'region: eu-west-1',
      'tokenCommand: ["/usr/bin/get-token"]',
      'tokenCommandEnv: [VENDOR_PROFILE]',
      'roles:',
      '  - name: a',
      '    roleArn: arn:aws:iam::111122223333:role/a',
      '',
    ].join('\n');
    const config = load({ flags: { config: '/c.yaml' }, files: { '/c.yaml': yaml } });
    expect(config.roles[0]!.token.source).toMatchObject({ kind: 'exec', passEnv: ['VENDOR_PROFILE'] });
  });

  it.each(['1ST', 'A-B', 'A=B', ''])('refuses %j, which is not a variable name, naming the flag', (name) => {
    const flags: ServeFlags = { 'role-arn': ARN, region: 'eu-west-1', 'token-command': '/usr/bin/get-token', 'token-command-env': ['OK', name] };
    expect(configError({ flags })).toContain('token-command-env');
  });
});
