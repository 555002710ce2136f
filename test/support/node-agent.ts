import { randomBytes, randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { generateKeyPair, SignJWT } from 'jose';
import type { Clock, RandomSource } from '../../src/core/clock.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { StsEmulator } from '../../src/demo/sts-emulator.js';
import { type RunningNodeAgent, startNodeAgent } from '../../src/node-agent/agent.js';
import { type NodeAgentFlags, resolveNodeAgentConfig } from '../../src/node-agent/config.js';
import { AUDIENCE, type DaemonProcess, memoryLogger, spawnListeningCommand } from './chain.js';

/** Every ServiceAccount of every namespace: the trust rule the tests' roles carry (IAM's StringLike). */
export const ANY_SERVICE_ACCOUNT = 'system:serviceaccount:*';

export function agentRoleArn(name: string, partition = 'aws', account = '111122223333'): string {
  return `arn:${partition}:iam::${account}:role/${name}`;
}

/** The demo OIDC issuer (a cluster's service-account issuer) and the STS emulator trusting it for `roleArns`. */
export interface PodChain {
  readonly issuer: DemoOidcIssuer;
  readonly sts: StsEmulator;
  close(): Promise<void>;
}

export async function startPodChain(options: { roleArns: readonly string[]; stsNow?: () => number }): Promise<PodChain> {
  const issuer = await DemoOidcIssuer.start();
  const sts = await StsEmulator.start({
    trust: options.roleArns.map((roleArn) => ({ roleArn, issuer: issuer.url, audience: AUDIENCE, subject: ANY_SERVICE_ACCOUNT })),
    ...(options.stsNow ? { now: options.stsNow } : {}),
  });
  return { issuer, sts, close: async () => void (await Promise.all([sts.close(), issuer.close()])) };
}

export interface PodTokenOptions {
  readonly namespace?: string;
  readonly pod?: string;
  readonly podUid?: string;
  readonly serviceAccount?: string;
  readonly aud?: string;
  readonly ttlSeconds?: number;
  /** No kubernetes.io.pod claim, as a TokenRequest not bound to a pod. */
  readonly unbound?: boolean;
}

/** A projected ServiceAccount token as the kubelet mounts it: `sub` and the `kubernetes.io` claim. */
export function mintPodToken(issuer: DemoOidcIssuer, options: PodTokenOptions = {}): Promise<string> {
  const namespace = options.namespace ?? 'payments';
  const serviceAccount = options.serviceAccount ?? 'api';
  const kubernetes: Record<string, unknown> = {
    namespace,
    serviceaccount: { name: serviceAccount, uid: randomUUID() },
    node: { name: 'node-1', uid: randomUUID() },
  };
  if (!options.unbound) kubernetes['pod'] = { name: options.pod ?? 'api-0', uid: options.podUid ?? randomUUID() };
  return issuer.mint({
    sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
    aud: options.aud ?? AUDIENCE,
    ttlSeconds: options.ttlSeconds ?? 3600,
    extra: { 'kubernetes.io': kubernetes },
  });
}

/** The decoded header and payload of a compact JWT (test inspection only). */
export function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [header, payload] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header!, 'base64url').toString('utf8')) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as Record<string, unknown>,
  };
}

/** A JWT assembled by hand: any header and payload, and a signature of random bytes of the given length. */
export function craftJwt(header: Record<string, unknown>, payload: Record<string, unknown>, signatureBytes = 64): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part(header)}.${part(payload)}.${randomBytes(signatureBytes).toString('base64url')}`;
}

/** The same header and claims as `token`, signed with a key the issuer never published: what a forger can make. */
export async function forgeToken(token: string): Promise<string> {
  const { header, payload } = decodeJwt(token);
  const { privateKey } = await generateKeyPair('ES256');
  return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(privateKey);
}

export interface AgentAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/**
 * One request as a pod's SDK makes it, over a fresh connection: `localAddress` picks the client
 * address (any 127.x.y.z on Linux), `host` overrides the Host header.
 */
export function askAgent(
  base: string,
  path: string,
  options: { token?: string; host?: string; localAddress?: string; method?: string } = {},
): Promise<AgentAnswer> {
  const url = new URL(base);
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers['authorization'] = options.token;
  if (options.host !== undefined) headers['host'] = options.host;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port,
        path,
        method: options.method ?? 'GET',
        headers,
        agent: false,
        ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export function credentialsPath(roleArn: string): string {
  return `/v1/credentials/${roleArn}`;
}

/** The node agent as a child process: the same handle as `serve`'s. */
export type NodeAgentProcess = DaemonProcess;

/**
 * The real `crosscred node-agent` (CLI_EXEC, so CI can rerun it against the single executable) on
 * ephemeral loopback ports. Resolves once the admin listener is open, with the addresses it logged.
 */
export function spawnNodeAgent(args: readonly string[], env: Record<string, string> = {}): Promise<NodeAgentProcess> {
  return spawnListeningCommand(
    'node-agent',
    ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--region', 'us-east-1', '--log-level', 'debug', ...args],
    { env, startTimeoutMs: 30_000 },
  );
}

export interface InProcessAgent {
  readonly agent: RunningNodeAgent;
  readonly base: string;
  readonly admin: string;
  readonly logs: string[];
  close(): Promise<void>;
}

/** `startNodeAgent()` in this process on loopback, with the real log options captured in memory. */
export async function startAgentInProcess(
  flags: NodeAgentFlags,
  deps: { clock?: Clock; random?: RandomSource; holdRequests?: boolean } = {},
  env: Record<string, string> = {},
): Promise<InProcessAgent> {
  const config = resolveNodeAgentConfig({ listen: ['127.0.0.1:0'], 'admin-listen': '127.0.0.1:0', region: 'us-east-1', ...flags }, env);
  const { logger, lines } = memoryLogger('debug');
  const agent = await startNodeAgent(config, { logger, ...deps });
  return {
    agent,
    base: `http://127.0.0.1:${agent.listeners[0]!.port}`,
    admin: `http://127.0.0.1:${agent.admin!.port}`,
    logs: lines,
    close: () => agent.close(),
  };
}
