import { chmod, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { loadConfig, type ServeFlags } from '../config/load.js';
import { CLOUDS, type CloudName } from '../core/clouds.js';
import { CrosscredError } from '../core/errors.js';
import { formatAddress } from '../core/listen-address.js';
import { AlibabaStsEmulator } from '../demo/alibaba-sts-emulator.js';
import { DemoOidcIssuer } from '../demo/oidc-issuer.js';
import { StsEmulator } from '../demo/sts-emulator.js';
import { TencentStsEmulator } from '../demo/tencent-sts-emulator.js';
import { createLogger } from '../observability/logger.js';
import { type RunningDaemon, startDaemon } from '../serve/daemon.js';

/** The demo's identities, as a Kubernetes ServiceAccount `app` in namespace `demo` would have them. */
const DEMO_ROLE_ARN = 'arn:aws:iam::111122223333:role/crosscred-demo';
const DEMO_SUBJECT = 'system:serviceaccount:demo:app';
/** Token life as the kubelet's default projected token, rewritten at 80% of it as the kubelet does. */
const TOKEN_TTL_SECONDS = 3600;
const TOKEN_ROTATE_MS = TOKEN_TTL_SECONDS * 800;
/** The daemon's log level unless --log-level is given: problems only. */
const DEMO_LOG_LEVEL = 'warn';

/** One cloud's end of the demo: its STS stand-in and the role crosscred assumes there. */
interface DemoCloud {
  readonly cloud: CloudName;
  readonly audience: string;
  readonly roleArn: string;
  readonly stsUrl: string;
  /** The settings that make crosscred's one role this cloud's, beside the token file and the STS URL. */
  readonly flags: ServeFlags;
  /** What the STS stand-in checks, for the banner. */
  readonly stsLine: string;
  close(): Promise<void>;
}

/** Starts the STS stand-in of `cloud`, trusting the demo issuer's tokens for the demo ServiceAccount. */
async function startDemoCloud(cloud: CloudName, issuerUrl: string): Promise<DemoCloud> {
  const checks = (audience: string) => `verifies signature, iss, aud=${audience}, exp, sub=${DEMO_SUBJECT}`;
  switch (cloud) {
    case 'alibaba': {
      const roleArn = 'acs:ram::1234567890123456:role/crosscred-demo';
      const oidcProviderArn = 'acs:ram::1234567890123456:oidc-provider/crosscred-demo';
      const audience = 'sts.aliyuncs.com';
      const sts = await AlibabaStsEmulator.start({ trust: [{ roleArn, oidcProviderArn, issuer: issuerUrl, audience, subject: DEMO_SUBJECT }] });
      return {
        cloud,
        audience,
        roleArn,
        stsUrl: sts.url,
        flags: { cloud, 'oidc-provider-arn': oidcProviderArn },
        stsLine: `Alibaba Cloud STS emulator (AssumeRoleWithOIDC; ${checks(audience)})`,
        close: () => sts.close(),
      };
    }
    case 'tencent': {
      const roleArn = 'qcs::cam::uin/100012345678:roleName/crosscred-demo';
      const providerId = 'crosscred-demo';
      const audience = 'sts.cloud.tencent.com';
      const sts = await TencentStsEmulator.start({ trust: [{ roleArn, providerId, issuer: issuerUrl, audience, subject: DEMO_SUBJECT }] });
      return {
        cloud,
        audience,
        roleArn,
        stsUrl: sts.url,
        flags: { cloud, 'provider-id': providerId, region: 'ap-guangzhou' },
        stsLine: `Tencent Cloud STS emulator (AssumeRoleWithWebIdentity; ${checks(audience)})`,
        close: () => sts.close(),
      };
    }
    case 'aws': {
      const audience = 'sts.amazonaws.com';
      const sts = await StsEmulator.start({ trust: [{ roleArn: DEMO_ROLE_ARN, issuer: issuerUrl, audience, subject: DEMO_SUBJECT }] });
      return {
        cloud,
        audience,
        roleArn: DEMO_ROLE_ARN,
        stsUrl: sts.url,
        flags: { region: 'us-east-1' },
        stsLine: `STS emulator (${checks(audience)})`,
        close: () => sts.close(),
      };
    }
  }
}

/**
 * `crosscred demo`: the whole chain on loopback, so a newcomer sees it work with nothing but Node.
 * Everything here except the issuer and STS stand-ins is the production code path. `--cloud
 * alibaba|tencent` runs it toward that cloud's STS, served the way that cloud's SDKs read it.
 */
export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      cloud: { type: 'string' },
      listen: { type: 'string', multiple: true },
      'admin-listen': { type: 'string' },
      check: { type: 'boolean' },
      'log-level': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const cloudName = values.cloud ?? 'aws';
  if (!(CLOUDS as readonly string[]).includes(cloudName)) throw new CrosscredError('CONFIG_INVALID', `--cloud must be one of ${CLOUDS.join(', ')}`);
  const dir = await mkdtemp(join(tmpdir(), 'crosscred-demo-'));
  await chmod(dir, 0o700);
  const tokenFile = join(dir, 'token');
  const authTokenFile = join(dir, 'auth-token');

  const issuer = await DemoOidcIssuer.start();
  const chain = await startDemoCloud(cloudName as CloudName, issuer.url);
  const writeToken = async () => {
    // Written beside and renamed into place, as the kubelet's atomic writer does.
    const tmp = `${tokenFile}.tmp`;
    await writeFile(tmp, await issuer.mint({ sub: DEMO_SUBJECT, aud: chain.audience, ttlSeconds: TOKEN_TTL_SECONDS }), { mode: 0o600 });
    await rename(tmp, tokenFile);
  };
  await writeToken();
  const rotation = setInterval(() => void writeToken(), TOKEN_ROTATE_MS);
  rotation.unref();

  const config = loadConfig({
    flags: {
      ...chain.flags,
      'role-arn': chain.roleArn,
      'token-file': tokenFile,
      'sts-endpoint': chain.stsUrl,
      // The container endpoint is AWS's; the Alibaba URI endpoint is open on the loopback listener without it.
      ...(chain.cloud === 'aws' ? { 'auth-token-file': authTokenFile } : {}),
      ...(values.listen?.length ? { listen: values.listen } : {}),
      ...(values['admin-listen'] ? { 'admin-listen': values['admin-listen'] } : {}),
      ...(values['log-level'] ? { 'log-level': values['log-level'] } : {}),
    },
    env: {},
  });
  // Logs go to stderr so that stdout carries only what a person copies. The daemon's JSON lines
  // would bury the text a person reads: only warnings and errors show unless --log-level asks.
  const logger = createLogger({ level: values['log-level'] ? config.logLevel : DEMO_LOG_LEVEL, fd: 2 });
  let daemon: RunningDaemon | undefined;
  const cleanup = async () => {
    clearInterval(rotation);
    await daemon?.close();
    await Promise.all([chain.close(), issuer.close()]);
    await rm(dir, { recursive: true, force: true });
    logger.flush();
  };

  try {
    daemon = await startDaemon(config, { logger });
    await daemon.firstFetch;
  } catch (err) {
    await cleanup();
    throw err;
  }
  const listener = daemon.listeners[0]!;
  const base = `http://${formatAddress(listener)}`;
  const roleName = config.roles[0]!.name;
  process.stdout.write(`${values.check ? 'crosscred demo --check: the chain is up for one self-check, then it stops.' : 'crosscred demo is running.'}
  OIDC issuer:   ${issuer.url} (ES256; discovery at /.well-known/openid-configuration)
  STS:           ${chain.stsUrl}, an ${chain.stsLine}
  Token file:    ${tokenFile}
  Role:          ${chain.roleArn}
  Admin:         ${daemon.admin ? `http://${formatAddress(daemon.admin)}/readyz` : 'off'}

${howToPoint(chain.cloud, base, authTokenFile, roleName)}
(The credentials come from the emulator: they work against nothing but it.)
`);

  if (values.check) {
    try {
      const summary = await selfCheck(chain.cloud, base, authTokenFile, roleName);
      process.stdout.write(`\nSelf-check passed: ${summary}\n`);
    } finally {
      await cleanup();
    }
    process.stdout.write(
      `The demo has stopped; run 'crosscred demo${chain.cloud === 'aws' ? '' : ` --cloud ${chain.cloud}`}' without --check to keep it serving.\n`,
    );
    return 0;
  }

  process.stdout.write('\nPress Ctrl-C to stop.\n');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await cleanup();
  return 0;
}

/** The variables (or the hosts entry) that point each cloud's unmodified SDKs at the demo. */
function howToPoint(cloud: CloudName, base: string, authTokenFile: string, roleName: string): string {
  switch (cloud) {
    case 'aws':
      return `Point any AWS SDK or the AWS CLI at it with one of:

  export AWS_EC2_METADATA_SERVICE_ENDPOINT=${base}/

  export AWS_CONTAINER_CREDENTIALS_FULL_URI=${base}/v1/credentials
  export AWS_CONTAINER_AUTHORIZATION_TOKEN="$(cat ${shellQuote(authTokenFile)})"
`;
    case 'alibaba':
      return `Point Alibaba Cloud's SDKs (their default credential chain) at it with:

  export ALIBABA_CLOUD_CREDENTIALS_URI=${base}/v1/alibaba/credentials
  export ALIBABA_CLOUD_ECS_METADATA_DISABLED=true

(The second line matters on an ECS instance only, where the Go SDK asks the instance's own role first.)
`;
    case 'tencent':
      return `Tencent Cloud's SDKs read the CVM metadata server at http://metadata.tencentyun.com (port 80) and
nothing else, so there is no variable to set. Read what they would read:

  curl ${base}/latest/meta-data/cam/security-credentials/${roleName}

or let an SDK read it: as root, start the demo with --listen 127.0.0.1:80 and add
"127.0.0.1 metadata.tencentyun.com" to /etc/hosts (in a network namespace, to leave the host alone).
`;
  }
}

/**
 * A path as one shell word. The container block reads the secret through the shell, not printed:
 * every client reads AWS_CONTAINER_AUTHORIZATION_TOKEN (AWS CLI 2.9, botocore 1.29 and the Go SDKs
 * read nothing else), and with the _FILE variable set as well the JS SDK warns on every lookup.
 */
function shellQuote(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
}

/** The request sequence each cloud's SDK makes; returns what it saw, without secrets. */
async function selfCheck(cloud: CloudName, base: string, authTokenFile: string, roleName: string): Promise<string> {
  if (cloud === 'alibaba') {
    const res = await request(`${base}/v1/alibaba/credentials`);
    const body = (await res.body.json()) as { Code?: string; AccessKeyId?: string; Expiration?: string };
    if (res.statusCode !== 200 || body.Code !== 'Success') throw new Error(`the Alibaba credentials URI answered ${res.statusCode}`);
    return `the Alibaba credentials URI served role "${roleName}" (access key ${body.AccessKeyId?.slice(0, 4)}…, expiring ${body.Expiration}).`;
  }
  if (cloud === 'tencent') {
    const list = await request(`${base}/latest/meta-data/cam/security-credentials/`);
    const listed = await list.body.text();
    // The list's body becomes the next path only once it is known to be a list.
    if (list.statusCode !== 200) throw new Error(`the CVM metadata role list answered ${list.statusCode}`);
    const res = await request(`${base}/latest/meta-data/cam/security-credentials/${encodeURIComponent(listed)}`);
    const body = (await res.body.json()) as { Code?: string; TmpSecretId?: string; Expiration?: string };
    if (res.statusCode !== 200 || body.Code !== 'Success') throw new Error(`the CVM metadata role answered ${res.statusCode}`);
    return `the CVM metadata served role "${listed}" (secret id ${body.TmpSecretId?.slice(0, 4)}…, expiring ${body.Expiration}).`;
  }
  const put = await request(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' } });
  const token = await put.body.text();
  if (put.statusCode !== 200) throw new Error(`IMDS token PUT answered ${put.statusCode}`);
  const list = await request(`${base}/latest/meta-data/iam/security-credentials/`, { headers: { 'x-aws-ec2-metadata-token': token } });
  const listed = await list.body.text();
  const creds = await request(`${base}/latest/meta-data/iam/security-credentials/${listed}`, { headers: { 'x-aws-ec2-metadata-token': token } });
  const imds = (await creds.body.json()) as { Code?: string; AccessKeyId?: string; Expiration?: string };
  if (creds.statusCode !== 200 || imds.Code !== 'Success') throw new Error(`IMDS credentials answered ${creds.statusCode}`);
  const container = await request(`${base}/v1/credentials`, { headers: { authorization: await readFile(authTokenFile, 'utf8') } });
  const body = (await container.body.json()) as { AccessKeyId?: string };
  if (container.statusCode !== 200 || typeof body.AccessKeyId !== 'string') throw new Error(`container endpoint answered ${container.statusCode}`);
  return `IMDSv2 role "${listed}" and the container endpoint both served credentials (access key ${imds.AccessKeyId?.slice(0, 4)}…, expiring ${imds.Expiration}).`;
}
