import { chmod, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { loadConfig } from '../config/load.js';
import { formatAddress } from '../core/listen-address.js';
import { DemoOidcIssuer } from '../demo/oidc-issuer.js';
import { StsEmulator } from '../demo/sts-emulator.js';
import { createLogger } from '../observability/logger.js';
import { type RunningDaemon, startDaemon } from '../serve/daemon.js';

/** The demo's identities, as a Kubernetes ServiceAccount `app` in namespace `demo` would have them. */
const DEMO_ROLE_ARN = 'arn:aws:iam::111122223333:role/crosscred-demo';
const DEMO_SUBJECT = 'system:serviceaccount:demo:app';
const DEMO_AUDIENCE = 'sts.amazonaws.com';
/** Token life as the kubelet's default projected token, rewritten at 80% of it as the kubelet does. */
const TOKEN_TTL_SECONDS = 3600;
const TOKEN_ROTATE_MS = TOKEN_TTL_SECONDS * 800;
/** The daemon's log level unless --log-level is given: problems only. */
const DEMO_LOG_LEVEL = 'warn';

/**
 * `crosscred demo`: the whole chain on loopback, so a newcomer sees it work with nothing but Node.
 * Everything here except the issuer and STS stand-ins is the production code path.
 */
export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { listen: { type: 'string', multiple: true }, 'admin-listen': { type: 'string' }, check: { type: 'boolean' }, 'log-level': { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const dir = await mkdtemp(join(tmpdir(), 'crosscred-demo-'));
  await chmod(dir, 0o700);
  const tokenFile = join(dir, 'token');
  const authTokenFile = join(dir, 'auth-token');

  const issuer = await DemoOidcIssuer.start();
  const sts = await StsEmulator.start({ trust: [{ roleArn: DEMO_ROLE_ARN, issuer: issuer.url, audience: DEMO_AUDIENCE, subject: DEMO_SUBJECT }] });
  const writeToken = async () => {
    // Written beside and renamed into place, as the kubelet's atomic writer does.
    const tmp = `${tokenFile}.tmp`;
    await writeFile(tmp, await issuer.mint({ sub: DEMO_SUBJECT, aud: DEMO_AUDIENCE, ttlSeconds: TOKEN_TTL_SECONDS }), { mode: 0o600 });
    await rename(tmp, tokenFile);
  };
  await writeToken();
  const rotation = setInterval(() => void writeToken(), TOKEN_ROTATE_MS);
  rotation.unref();

  const config = loadConfig({
    flags: {
      'role-arn': DEMO_ROLE_ARN,
      'token-file': tokenFile,
      region: 'us-east-1',
      'sts-endpoint': sts.url,
      'auth-token-file': authTokenFile,
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
    await Promise.all([sts.close(), issuer.close()]);
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
  process.stdout.write(`${values.check ? 'crosscred demo --check: the chain is up for one self-check, then it stops.' : 'crosscred demo is running.'}
  OIDC issuer:   ${issuer.url} (ES256; discovery at /.well-known/openid-configuration)
  STS emulator:  ${sts.url} (verifies signature, iss, aud=${DEMO_AUDIENCE}, exp, sub=${DEMO_SUBJECT})
  Token file:    ${tokenFile}
  Role:          ${DEMO_ROLE_ARN}
  Admin:         ${daemon.admin ? `http://${formatAddress(daemon.admin)}/readyz` : 'off'}

Point any AWS SDK or the AWS CLI at it with one of:

  export AWS_EC2_METADATA_SERVICE_ENDPOINT=${base}/

  export AWS_CONTAINER_CREDENTIALS_FULL_URI=${base}/v1/credentials
  export AWS_CONTAINER_AUTHORIZATION_TOKEN="$(cat ${shellQuote(authTokenFile)})"

(The credentials come from the emulator: they work against nothing but it.)
`);

  if (values.check) {
    try {
      const summary = await selfCheck(base, authTokenFile);
      process.stdout.write(`\nSelf-check passed: ${summary}\n`);
    } finally {
      await cleanup();
    }
    process.stdout.write(`The demo has stopped; run 'crosscred demo' without --check to keep it serving.\n`);
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

/**
 * A path as one shell word. The container block reads the secret through the shell, not printed:
 * every client reads AWS_CONTAINER_AUTHORIZATION_TOKEN (AWS CLI 2.9, botocore 1.29 and the Go SDKs
 * read nothing else), and with the _FILE variable set as well the JS SDK warns on every lookup.
 */
function shellQuote(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
}

/** The request sequence an SDK makes on each endpoint; returns what it saw, without secrets. */
async function selfCheck(base: string, authTokenFile: string): Promise<string> {
  const put = await request(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' } });
  const token = await put.body.text();
  if (put.statusCode !== 200) throw new Error(`IMDS token PUT answered ${put.statusCode}`);
  const list = await request(`${base}/latest/meta-data/iam/security-credentials/`, { headers: { 'x-aws-ec2-metadata-token': token } });
  const roleName = await list.body.text();
  const creds = await request(`${base}/latest/meta-data/iam/security-credentials/${roleName}`, { headers: { 'x-aws-ec2-metadata-token': token } });
  const imds = (await creds.body.json()) as { Code?: string; AccessKeyId?: string; Expiration?: string };
  if (creds.statusCode !== 200 || imds.Code !== 'Success') throw new Error(`IMDS credentials answered ${creds.statusCode}`);
  const container = await request(`${base}/v1/credentials`, { headers: { authorization: await readFile(authTokenFile, 'utf8') } });
  const body = (await container.body.json()) as { AccessKeyId?: string };
  if (container.statusCode !== 200 || typeof body.AccessKeyId !== 'string') throw new Error(`container endpoint answered ${container.statusCode}`);
  return `IMDSv2 role "${roleName}" and the container endpoint both served credentials (access key ${imds.AccessKeyId?.slice(0, 4)}…, expiring ${imds.Expiration}).`;
}
