import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { type AttestationContext, AttestationError, type AttestedIdentity, type Attestor } from '../../src/issuer/attestor.js';
import { type IssuerConfig, parseIssuerConfigText } from '../../src/issuer/issuer-config.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/issuer-server.js';
import { generateKeyFile, type SigningAlgorithm } from '../../src/issuer/keys.js';
import { JWT_TOKEN_TYPE, SUBJECT_TOKEN_TYPES, type SubjectTokenType, TOKEN_EXCHANGE_GRANT_TYPE } from '../../src/protocol/issuer-token-exchange.js';
import { memoryLogger } from './chain.js';

export const ECS_ACCOUNT = '1335926999564873';
export const TENCENT_UIN = '100012345678';

/**
 * What the fake attestor "proves": the test writes the facts into the subject token itself. Only
 * for tests: a real attestor establishes them from a cloud's signature or a cloud's STS answer.
 */
export interface FakeFacts {
  readonly kind?: keyof typeof SUBJECT_TOKEN_TYPES;
  readonly accountId?: string;
  readonly region?: string;
  readonly instanceId?: string;
  readonly roleName?: string;
  readonly roleId?: string;
  readonly attributes?: Record<string, string>;
  /** Unique per attestation unless a test replays one on purpose. */
  readonly nonce?: string;
  /** The issuer the attestation is bound to; default: whatever issuer it is presented to. */
  readonly aud?: string;
  /** How long the attestation stays presentable, in ms (default 5 minutes). */
  readonly validForMs?: number;
  /** Make the attestor refuse, report its cloud unreachable, or never answer. */
  readonly fail?: 'invalid' | 'malformed' | 'unavailable' | 'hang' | 'throw';
}

export function fakeSubjectToken(facts: FakeFacts = {}): string {
  return Buffer.from(JSON.stringify({ nonce: randomBytes(8).toString('hex'), ...facts }), 'utf8').toString('base64url');
}

/** An Attestor for one kind that believes what the token says, checks its binding, and counts calls. */
export class FakeAttestor implements Attestor {
  calls = 0;
  /** The signal of the last call (to check that the deadline aborts it). */
  lastSignal: AbortSignal | undefined;

  constructor(readonly subjectTokenType: SubjectTokenType) {}

  async attest(subjectToken: string, context: AttestationContext): Promise<AttestedIdentity> {
    this.calls++;
    this.lastSignal = context.signal;
    let facts: FakeFacts & { nonce: string };
    try {
      facts = JSON.parse(Buffer.from(subjectToken, 'base64url').toString('utf8')) as typeof facts;
    } catch {
      throw new AttestationError('invalid_request', 'the subject token is not a fake attestation');
    }
    if (facts.fail === 'malformed') throw new AttestationError('invalid_request', 'the fake attestation is "malformed" on purpose');
    if (facts.fail === 'invalid') throw new AttestationError('invalid_grant', 'the fake signature does not verify');
    if (facts.fail === 'unavailable') throw new AttestationError('temporarily_unavailable', 'the fake cloud STS cannot be reached');
    if (facts.fail === 'throw') throw new TypeError('fake attestor bug');
    if (facts.fail === 'hang') {
      await new Promise((resolve) => context.signal.addEventListener('abort', resolve, { once: true }));
      throw new AttestationError('temporarily_unavailable', 'aborted');
    }
    if ((facts.aud ?? context.issuerUrl) !== context.issuerUrl) throw new AttestationError('invalid_grant', 'the attestation is bound to another issuer');
    const kind = SUBJECT_TOKEN_TYPES[facts.kind ?? kindName(this.subjectTokenType)];
    return {
      kind,
      cloud: kind === SUBJECT_TOKEN_TYPES.tencentCamRole ? 'tencent' : 'alibaba',
      accountId: facts.accountId ?? (kind === SUBJECT_TOKEN_TYPES.tencentCamRole ? TENCENT_UIN : ECS_ACCOUNT),
      ...(facts.region !== undefined ? { region: facts.region } : {}),
      ...(facts.instanceId !== undefined ? { instanceId: facts.instanceId } : {}),
      ...(facts.roleName !== undefined ? { roleName: facts.roleName } : {}),
      ...(facts.roleId !== undefined ? { roleId: facts.roleId } : {}),
      attributes: facts.attributes ?? {},
      replayKey: `fake:${facts.nonce}`,
      replayUntilWall: context.nowWall + (facts.validForMs ?? 300_000),
    };
  }
}

function kindName(type: SubjectTokenType): keyof typeof SUBJECT_TOKEN_TYPES {
  return (Object.keys(SUBJECT_TOKEN_TYPES) as (keyof typeof SUBJECT_TOKEN_TYPES)[]).find((k) => SUBJECT_TOKEN_TYPES[k] === type)!;
}

/** A fresh private directory; the caller removes it. */
export function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'crosscred-issuer-'));
}

/** A TCP port free on 127.0.0.1 a moment ago (the issuer URL must name its port before it listens). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function makeKey(dir: string, name: string, alg: SigningAlgorithm = 'ES256'): Promise<{ file: string; kid: string }> {
  const file = join(dir, name);
  const { kid } = await generateKeyFile(alg, file, 2048);
  return { file, kid };
}

/** A complete issuer config (as the YAML object) for the three kinds; `overrides` replace top-level keys. */
export function baseConfig(
  publicUrl: string,
  keys: Array<{ file: string; active?: boolean }>,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    publicUrl,
    listen: new URL(publicUrl).host,
    adminListen: '127.0.0.1:0',
    keys,
    audiences: ['sts.amazonaws.com', 'crosscred-test'],
    attestors: {
      alibabaEcsIdentity: { signingCertificateFiles: ['/nonexistent/not-read-by-fakes.pem'] },
      alibabaRamRole: {},
      tencentCamRole: {},
    },
    policy: {
      alibabaEcsIdentity: {
        accounts: [ECS_ACCOUNT],
        regions: ['cn-hangzhou', 'cn-shanghai'],
        instanceIds: ['*'],
        sessionTags: { 'crosscred-account': 'accountId', 'crosscred-region': 'region', 'crosscred-instance': 'instanceId', zone: 'attribute:zone-id' },
        transitiveTagKeys: ['crosscred-account'],
      },
      alibabaRamRole: { accounts: [ECS_ACCOUNT], roles: ['app-role'], instanceIds: ['*'] },
      tencentCamRole: { accounts: [TENCENT_UIN], roles: ['4611686018427397919'], instanceIds: ['*'] },
    },
    ...overrides,
  };
}

export function configFrom(object: Record<string, unknown>, path: string): IssuerConfig {
  const result = parseIssuerConfigText(stringify(object), path);
  if ('problems' in result) throw new Error(`test config invalid:\n${result.problems.join('\n')}`);
  return result.config;
}

export interface TestIssuer {
  readonly issuer: RunningIssuer;
  readonly dir: string;
  readonly url: string;
  readonly tokenUrl: string;
  readonly admin: string;
  readonly config: IssuerConfig;
  readonly configObject: Record<string, unknown>;
  readonly attestors: Map<SubjectTokenType, FakeAttestor>;
  readonly logs: string[];
  readonly keys: Array<{ file: string; kid: string }>;
  /** POSTs a token-exchange form (extra fields override the defaults; undefined removes one). */
  requestToken(facts?: FakeFacts, form?: Record<string, string | undefined>): Promise<Response>;
  close(): Promise<void>;
}

/** crosscred issuer in this process on a free loopback port, with fake attestors for all three kinds. */
export async function startTestIssuer(options: { overrides?: Record<string, unknown>; alg?: SigningAlgorithm } = {}): Promise<TestIssuer> {
  const dir = await mkdtemp(join(tmpdir(), 'crosscred-issuer-'));
  const key = await makeKey(dir, 'key-a.pem', options.alg ?? 'ES256');
  const attestors = new Map<SubjectTokenType, FakeAttestor>(Object.values(SUBJECT_TOKEN_TYPES).map((t) => [t, new FakeAttestor(t)]));
  const { logger, lines } = memoryLogger('debug');
  for (let attempt = 0; ; attempt++) {
    const url = `http://127.0.0.1:${await freePort()}`;
    const configObject = baseConfig(url, [{ file: key.file, active: true }], options.overrides);
    const configPath = join(dir, 'issuer.yaml');
    await writeFile(configPath, stringify(configObject));
    const config = configFrom(configObject, configPath);
    let issuer: RunningIssuer;
    try {
      issuer = await startIssuer(config, { logger, createAttestors: async () => attestors });
    } catch (err) {
      if (attempt < 3 && String((err as Error).message).includes('EADDRINUSE')) continue;
      throw err;
    }
    const tokenUrl = config.tokenEndpointUrl;
    return {
      issuer,
      dir,
      url,
      tokenUrl,
      admin: `http://127.0.0.1:${issuer.admin!.port}`,
      config,
      configObject,
      attestors,
      logs: lines,
      keys: [key],
      requestToken: (facts = {}, form = {}) => {
        const fields: Record<string, string | undefined> = {
          grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
          subject_token_type: SUBJECT_TOKEN_TYPES[facts.kind ?? 'alibabaEcsIdentity'],
          subject_token: fakeSubjectToken({ region: 'cn-hangzhou', instanceId: 'i-bp1test0000000001', ...facts }),
          requested_token_type: JWT_TOKEN_TYPE,
          ...form,
        };
        const body = new URLSearchParams(Object.entries(fields).filter((e): e is [string, string] => e[1] !== undefined));
        return fetch(tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: body.toString() });
      },
      close: async () => {
        await issuer.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
}
