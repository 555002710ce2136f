import { parseArgs } from 'node:util';
import { request } from 'undici';
import { loadConfig, type ServeFlags } from '../config/load.js';
import { systemClock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { classifyFailure } from '../exchange/failure.js';
import { awsTimestamp } from '../platform/aws/credential-documents.js';
import type { AwsCredentials } from '../platform/aws/credentials.js';
import { roleExchangeFor } from '../roles/role-chain.js';
import { openStsConnection } from '../roles/web-identity-role.js';
import { createTokenSource } from '../sources/create-token-source.js';
import { readRegularFile } from '../util/read-regular-file.js';
import { SERVE_OPTIONS } from './serve-options.js';

const OPTIONS = {
  ...SERVE_OPTIONS,
  endpoint: { type: 'string' },
  'timeout-ms': { type: 'string' },
  role: { type: 'string' },
} as const;

/** Largest answer accepted from the daemon. */
const MAX_DAEMON_ANSWER_BYTES = 64 * 1024;

/**
 * `crosscred credential-process`: prints credentials in the format the AWS CLI and SDKs read from
 * `credential_process` (Version 1). Only the JSON goes to stdout; problems go to stderr.
 */
export async function runCredentialProcess(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false });
  const endpoint = values.endpoint ?? process.env['CROSSCRED_ENDPOINT'];
  const credentials = endpoint
    ? await fromDaemon(endpoint, values['auth-token-file'], Number(values['timeout-ms'] ?? 5000))
    : await byExchange(values as ServeFlags, values.role);
  process.stdout.write(
    `${JSON.stringify({
      Version: 1,
      AccessKeyId: credentials.accessKeyId,
      SecretAccessKey: credentials.secretAccessKey,
      SessionToken: credentials.sessionToken,
      Expiration: awsTimestamp(credentials.expirationWall),
    })}\n`,
  );
  return 0;
}

async function fromDaemon(endpoint: string, authTokenFile: string | undefined, timeoutMs: number): Promise<AwsCredentials> {
  const headers: Record<string, string> = {};
  if (authTokenFile) {
    const secret = await readRegularFile(authTokenFile, 4096).catch(() => undefined);
    if (secret === undefined) throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `cannot read ${authTokenFile}, or it is larger than 4096 bytes`);
    headers['authorization'] = secret.toString('utf8').trim();
  }
  let status: number;
  let text: string;
  try {
    const res = await request(endpoint, { headers, signal: AbortSignal.timeout(Number.isFinite(timeoutMs) ? timeoutMs : 5000) });
    status = res.statusCode;
    text = await readLimited(res.body);
  } catch (err) {
    throw new CrosscredError('DAEMON_UNREACHABLE', `cannot reach ${endpoint} (${(err as { code?: string }).code ?? (err as Error).name})`);
  }
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new CrosscredError('DAEMON_UNREACHABLE', `${endpoint} answered HTTP ${status} with a body that is not JSON`);
  }
  if (status !== 200) {
    const code = typeof body['Code'] === 'string' ? body['Code'].slice(0, 80) : `HTTP ${status}`;
    const message = typeof body['Message'] === 'string' ? body['Message'].slice(0, 300) : '';
    throw new CrosscredError('DAEMON_UNREACHABLE', `${endpoint} answered HTTP ${status}: ${code} ${message}`.trim());
  }
  const { AccessKeyId, SecretAccessKey, Token, Expiration, RoleArn, AccountId } = body;
  const expiration = typeof Expiration === 'string' ? Date.parse(Expiration) : NaN;
  if (typeof AccessKeyId !== 'string' || typeof SecretAccessKey !== 'string' || typeof Token !== 'string' || !Number.isFinite(expiration)) {
    throw new CrosscredError('DAEMON_UNREACHABLE', `${endpoint} answered without complete credentials`);
  }
  return {
    cloud: 'aws',
    accessKeyId: AccessKeyId,
    secretAccessKey: SecretAccessKey,
    sessionToken: Token,
    expirationWall: expiration,
    roleArn: String(RoleArn ?? ''),
    accountId: String(AccountId ?? ''),
  };
}

async function byExchange(flags: ServeFlags, roleName: string | undefined): Promise<AwsCredentials> {
  const config = loadConfig({ flags: { ...flags, 'admin-listen': 'off' }, env: process.env });
  const role = roleName ? config.roles.find((r) => r.name === roleName) : config.roles[0];
  if (!role || (!roleName && config.roles.length > 1)) {
    throw new CrosscredError(
      'CONFIG_INVALID',
      roleName
        ? `no role named "${roleName}" (roles: ${config.roles.map((r) => r.name).join(', ')})`
        : `several roles are configured; pick one with --role (${config.roles.map((r) => r.name).join(', ')})`,
    );
  }
  if (role.cloud !== 'aws') {
    throw new CrosscredError('CONFIG_INVALID', `role "${role.name}" is a ${role.cloud} role: credential_process serves AWS roles only`);
  }
  const source = createTokenSource(role.token.source, systemClock, { stsTransport: config.sts });
  const sts = openStsConnection(role, config.sts);
  const exchange = roleExchangeFor(role, source, sts.connection, systemClock);
  try {
    const credentials = await exchange.exchange();
    if (credentials.cloud !== 'aws') throw new CrosscredError('STS_BAD_RESPONSE', `role "${role.name}" answered ${credentials.cloud} credentials`);
    return credentials;
  } catch (err) {
    if (err instanceof CrosscredError) throw err;
    const failure = classifyFailure(err);
    throw new CrosscredError(failure.kind === 'terminal' ? 'STS_REJECTED' : 'STS_UNAVAILABLE', failure.message);
  } finally {
    sts.close();
    await source.close?.();
  }
}

async function readLimited(body: AsyncIterable<Buffer | Uint8Array>): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_DAEMON_ANSWER_BYTES) throw new Error('answer too large');
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}
