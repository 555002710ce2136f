import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { POD_IDENTITY_IPV4, POD_IDENTITY_IPV6 } from '../../src/protocol/pod-identity.js';
import { REPO_ROOT } from './chain.js';
import { selfSignedCert } from './self-signed.js';

/**
 * A Kubernetes node and its pods made of network namespaces, for the node agent's end-to-end test:
 *
 * - the "node" namespace holds 169.254.170.23 and fd00:ec2::23 on its loopback (IPv6 with
 *   `nodad`), as `net-setup --node-agent` would, and a "service" address (10.96.0.1, like a
 *   ClusterIP) where the node's helpers answer pods: STS over HTTPS on :443 and a request sink;
 * - each "pod" namespace is joined to the node by its own veth pair (eth0 in the pod, as a CNI
 *   makes it), with routes to the two agent addresses and the service address through the node,
 *   and no default route: so 169.254.169.254 is unreachable from a pod at once, not after a
 *   timeout;
 * - `ip netns exec` bind-mounts /etc/netns/<pod>/hosts over /etc/hosts for whatever runs in the
 *   pod: there STS's real host names (sts.amazonaws.com, sts.us-east-1.amazonaws.com) resolve to
 *   the service address, the only way to point SDKs too old for AWS_ENDPOINT_URL_STS at a test STS.
 *
 * Everything is deleted by close(), which tests call in afterAll (also after a failure).
 */
const run = promisify(execFile);

/** The node's service address (a ClusterIP stand-in): pods reach the node's helpers there. */
export const SERVICE_ADDRESS = '10.96.0.1';
/** STS's host names, resolved to SERVICE_ADDRESS inside pods. */
export const STS_HOST_NAMES = ['sts.amazonaws.com', 'sts.us-east-1.amazonaws.com'] as const;
/** Where the sink (a GetCallerIdentity stand-in that records the signing key) listens on SERVICE_ADDRESS. */
export const SINK_PORT = 8080;
/** The instance metadata service's address, put on the node only by exposeImds. */
export const IMDS_ADDRESS = '169.254.169.254';
/** The role the node's stand-in IMDS offers (the node's own role, which pods must never get). */
export const NODE_ROLE_NAME = 'eks-node-role';
/** Bound on one command in a namespace, an SDK client included (ms): generous, the machine is shared. */
export const COMMAND_TIMEOUT_MS = 90_000;

export interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Pod {
  readonly name: string;
  readonly ns: string;
  readonly ipv4: string;
  readonly ipv6: string;
  /** The node's end of the pod's veth pair, the pod's next hop to the node. */
  readonly gatewayV4: string;
  /** Where this pod's projected token lives (the webhook's mount, on the host's disk). */
  readonly tokenFile: string;
  /** Writes the token file atomically and without a trailing newline, as the kubelet does. */
  writeToken(token: string): Promise<void>;
}

/** Why namespaces cannot be made here, or undefined when they can (root, iproute2). */
export async function podNetworkUnavailable(): Promise<string | undefined> {
  const probe = `cc-probe-${process.pid}`;
  try {
    await run('ip', ['netns', 'add', probe]);
    await run('ip', ['netns', 'del', probe]);
    return undefined;
  } catch (err) {
    return `cannot create a network namespace here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`;
  }
}

export class PodNetwork {
  readonly node: string;
  readonly dir: string;
  readonly pods: Pod[] = [];
  readonly #prefix: string;
  readonly #children = new Set<ChildProcess>();
  readonly #namespaces: string[] = [];
  #imdsOnNode = false;

  private constructor(prefix: string, dir: string) {
    this.#prefix = prefix;
    this.node = `${prefix}-node`;
    this.dir = dir;
  }

  /** Makes the node namespace with the agent's addresses and the service address. */
  static async create(prefix = `cc${process.pid}`): Promise<PodNetwork> {
    const net = new PodNetwork(prefix, await mkdtemp(join(tmpdir(), 'crosscred-pods-')));
    try {
      await net.#addNamespace(net.node);
      await run('ip', ['-n', net.node, 'addr', 'add', `${POD_IDENTITY_IPV4}/32`, 'dev', 'lo']);
      await run('ip', ['-n', net.node, 'addr', 'add', `${POD_IDENTITY_IPV6}/128`, 'dev', 'lo', 'nodad']);
      await run('ip', ['-n', net.node, 'addr', 'add', `${SERVICE_ADDRESS}/32`, 'dev', 'lo']);
    } catch (err) {
      // The caller never gets the object to close: leave nothing behind.
      await net.close();
      throw err;
    }
    return net;
  }

  /** A pod namespace on a veth pair of its own, numbered in order (10.200.<n>.2, fd00:200:<n>::2). */
  async addPod(name: string): Promise<Pod> {
    const n = this.pods.length + 1;
    const ns = `${this.#prefix}-${name}`;
    await this.#addNamespace(ns);
    const nodeSide = `veth${n}`;
    await run('ip', ['link', 'add', nodeSide, 'netns', this.node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    const [nodeV4, podV4] = [`10.200.${n}.1`, `10.200.${n}.2`];
    const [nodeV6, podV6] = [`fd00:200:${n}::1`, `fd00:200:${n}::2`];
    await run('ip', ['-n', this.node, 'addr', 'add', `${nodeV4}/30`, 'dev', nodeSide]);
    await run('ip', ['-n', this.node, 'addr', 'add', `${nodeV6}/64`, 'dev', nodeSide, 'nodad']);
    await run('ip', ['-n', ns, 'addr', 'add', `${podV4}/30`, 'dev', 'eth0']);
    await run('ip', ['-n', ns, 'addr', 'add', `${podV6}/64`, 'dev', 'eth0', 'nodad']);
    await run('ip', ['-n', this.node, 'link', 'set', nodeSide, 'up']);
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    for (const to of [`${POD_IDENTITY_IPV4}/32`, `${SERVICE_ADDRESS}/32`]) await run('ip', ['-n', ns, 'route', 'add', to, 'via', nodeV4]);
    await run('ip', ['-n', ns, '-6', 'route', 'add', `${POD_IDENTITY_IPV6}/128`, 'via', nodeV6]);
    // What runs in the pod resolves STS's names to the node's service address (see the file comment).
    const etc = join('/etc/netns', ns);
    await mkdir(etc, { recursive: true });
    await writeFile(join(etc, 'hosts'), `127.0.0.1\tlocalhost\n::1\tlocalhost\n${SERVICE_ADDRESS}\t${STS_HOST_NAMES.join(' ')}\n`);
    const podDir = join(this.dir, name);
    await mkdir(podDir, { recursive: true });
    const tokenFile = join(podDir, 'token');
    const pod: Pod = {
      name,
      ns,
      ipv4: podV4,
      ipv6: podV6,
      gatewayV4: nodeV4,
      tokenFile,
      writeToken: async (token) => {
        await writeFile(`${tokenFile}.tmp`, token);
        await chmod(`${tokenFile}.tmp`, 0o644);
        await rename(`${tokenFile}.tmp`, tokenFile);
      },
    };
    this.pods.push(pod);
    return pod;
  }

  /**
   * Lets `pod` reach 169.254.169.254 on the node, as pods on a node whose IMDS is not blocked do
   * (NodeServices.startImds answers there).
   */
  async exposeImds(pod: Pod): Promise<void> {
    if (!this.#imdsOnNode) {
      await run('ip', ['-n', this.node, 'addr', 'add', `${IMDS_ADDRESS}/32`, 'dev', 'lo']);
      this.#imdsOnNode = true;
    }
    await run('ip', ['-n', pod.ns, 'route', 'add', `${IMDS_ADDRESS}/32`, 'via', pod.gatewayV4]);
  }

  /** Runs a command in namespace `ns` to its end; resolves with its exit code and output, whatever they are. */
  exec(ns: string, command: string, args: readonly string[], env: Record<string, string> = {}, timeoutMs = COMMAND_TIMEOUT_MS): Promise<ExecResult> {
    return new Promise((resolve) => {
      execFile('ip', ['netns', 'exec', ns, command, ...args], { env, timeout: timeoutMs, maxBuffer: 4 << 20, cwd: REPO_ROOT }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code as number) : null) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** Starts a long-running command in `ns`; it is stopped by close(). */
  spawn(ns: string, command: string, args: readonly string[], options: { env?: Record<string, string>; ipc?: boolean } = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, command, ...args], {
      env: options.env ?? { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root' },
      stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
      cwd: REPO_ROOT,
    });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /** Stops every process started here, deletes the namespaces (their links and addresses go with them) and the files. */
  async close(): Promise<void> {
    await Promise.all([...this.#children].map((child) => stop(child)));
    for (const ns of this.#namespaces.reverse()) {
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      await rm(join('/etc/netns', ns), { recursive: true, force: true });
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  async #addNamespace(ns: string): Promise<void> {
    await run('ip', ['netns', 'add', ns]);
    this.#namespaces.push(ns);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
export function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', (code) => {
      clearTimeout(kill);
      resolve(code);
    });
    child.kill('SIGTERM');
  });
}

/** One AssumeRoleWithWebIdentity request as an emulator recorded it; the token only as its SHA-256. */
export interface StsCall {
  readonly tokenSha256: string;
  readonly roleArn: string;
}

export interface StsIssued {
  readonly accessKeyId: string;
  readonly roleArn: string;
  readonly sessionName: string;
  readonly subject: string;
  readonly expiration: string;
}

export interface StsState {
  readonly calls: number;
  readonly requests: StsCall[];
  readonly issued: StsIssued[];
}

export interface NodeServicesState {
  /** The STS the node agent talks to (HTTP on the node's loopback). */
  readonly agentSts: StsState;
  /** The STS pods reach in web-identity mode (HTTPS on the service address, under STS's own host names). */
  readonly podSts: StsState;
  /** Access key ids that signed requests to the sink, in order. */
  readonly sink: string[];
}

export interface TokenClaims {
  readonly sub: string;
  readonly aud: string;
  readonly ttlSeconds: number;
  readonly extra?: Record<string, unknown>;
}

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/**
 * The cluster around the node agent, running in the node namespace as one process driven over IPC:
 * the demo OIDC issuer (the "API server" that signs projected tokens), the STS emulator the agent
 * uses, a second one on STS's real names over HTTPS for pods that call STS themselves, and a sink.
 */
export interface NodeServices {
  readonly issuerUrl: string;
  /** For the agent, in the node namespace. */
  readonly agentStsUrl: string;
  /** PEM file of the certificate pods' STS serves (give it to clients as AWS_CA_BUNDLE). */
  readonly caBundle: string;
  mint(claims: TokenClaims): Promise<string>;
  /** The same claims and header (kid included), signed by a key the issuer never published. */
  forge(claims: TokenClaims): Promise<string>;
  state(): Promise<NodeServicesState>;
  /**
   * Starts a stand-in IMDS (IMDSv2, as strict as the Go SDK wants it) on 169.254.169.254:80 in the
   * node namespace, offering NODE_ROLE_NAME; resolves with the access key id it hands out. Call
   * PodNetwork.exposeImds first.
   */
  startImds(): Promise<string>;
  /** A GET (or other method) made from inside the node namespace. */
  fetch(url: string, init?: { method?: string; headers?: Record<string, string> }): Promise<HttpAnswer>;
  /** Lets a role be assumed by every subject matching `subject` (IAM StringLike). */
  readonly trust: ReadonlyArray<{ roleArn: string; audience: string; subject: string }>;
}

const SERVICES_SCRIPT = (demo: { issuer: string; sts: string }) => `
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
const { DemoOidcIssuer } = await import(${JSON.stringify(demo.issuer)});
const { StsEmulator } = await import(${JSON.stringify(demo.sts)});
const { decodeProtectedHeader, generateKeyPair, SignJWT } = await import('jose');
const config = JSON.parse(process.argv[1]);
const issuer = await DemoOidcIssuer.start();
const trust = config.trust.map((t) => ({ ...t, issuer: issuer.url }));
const agentSts = await StsEmulator.start({ trust });
const podSts = await StsEmulator.start({ trust, host: config.serviceAddress, port: 443, tls: config.tls });
const sink = [];
const sinkServer = createServer((req, res) => {
  const key = /Credential=([A-Z0-9]+)\\//.exec(req.headers.authorization ?? '')?.[1];
  sink.push(key ?? '(unsigned)');
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'text/xml' }).end(
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>' +
    '<Arn>arn:aws:sts::111122223333:assumed-role/sink/sink</Arn><UserId>AROASINK:sink</UserId><Account>111122223333</Account>' +
    '</GetCallerIdentityResult><ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata></GetCallerIdentityResponse>'));
});
await new Promise((resolve) => sinkServer.listen(config.sinkPort, config.serviceAddress, resolve));
const { privateKey: forgeKey } = await generateKeyPair('ES256');
const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const stsState = (sts) => ({
  calls: sts.calls,
  requests: sts.requests.map((r) => ({ tokenSha256: sha256(r.token), roleArn: r.roleArn })),
  issued: sts.issued.map((i) => ({ ...i, expiration: i.expiration.toISOString() })),
});
let imdsKey;
const ops = {
  startImds: async () => {
    if (imdsKey) return imdsKey;
    imdsKey = 'ASIANODEROLE' + Math.random().toString(36).slice(2, 10).toUpperCase();
    const server = createServer((req, res) => {
      const ttl = req.headers['x-aws-ec2-metadata-token-ttl-seconds'];
      if (req.method === 'PUT' && req.url === '/latest/api/token' && ttl)
        return void res.writeHead(200, { 'x-aws-ec2-metadata-token-ttl-seconds': ttl }).end('node-imds-session');
      if (req.headers['x-aws-ec2-metadata-token'] !== 'node-imds-session') return void res.writeHead(401).end();
      if (req.url === '/latest/meta-data/iam/security-credentials/') return void res.writeHead(200).end(config.nodeRole);
      if (req.url === '/latest/meta-data/iam/security-credentials/' + config.nodeRole) {
        const expiration = new Date(Date.now() + 6 * 3600_000).toISOString().replace(/.d+Z$/, 'Z');
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
          Code: 'Success', LastUpdated: new Date().toISOString().replace(/.d+Z$/, 'Z'), Type: 'AWS-HMAC',
          AccessKeyId: imdsKey, SecretAccessKey: 'node-role-secret', Token: 'node-role-session-token', Expiration: expiration,
        }));
      }
      res.writeHead(404).end();
    });
    await new Promise((resolve) => server.listen(80, config.imdsAddress, resolve));
    return imdsKey;
  },
  mint: (claims) => issuer.mint(claims),
  forge: async (claims) => {
    const genuine = await issuer.mint(claims);
    const header = decodeProtectedHeader(genuine);
    const payload = JSON.parse(Buffer.from(genuine.split('.')[1], 'base64url').toString('utf8'));
    return new SignJWT(payload).setProtectedHeader(header).sign(forgeKey);
  },
  state: () => ({ agentSts: stsState(agentSts), podSts: stsState(podSts), sink: [...sink] }),
  fetch: async ({ url, init }) => {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10000) });
    return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
  },
};
process.on('message', async ({ id, op, arg }) => {
  try {
    process.send({ id, result: await ops[op](arg) });
  } catch (err) {
    process.send({ id, error: String(err?.message ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ id: 0, result: { issuer: issuer.url, agentSts: agentSts.url } });
`;

/** Starts the node's services (see NodeServices) in the node namespace. */
export async function startNodeServices(net: PodNetwork, trust: NodeServices['trust']): Promise<NodeServices> {
  const keyFile = join(net.dir, 'sts-key.pem');
  const certFile = join(net.dir, 'sts-cert.pem');
  await selfSignedCert({ cn: STS_HOST_NAMES[0]!, dnsNames: STS_HOST_NAMES, keyFile, certFile });
  const config = {
    trust,
    serviceAddress: SERVICE_ADDRESS,
    sinkPort: SINK_PORT,
    imdsAddress: IMDS_ADDRESS,
    nodeRole: NODE_ROLE_NAME,
    tls: { key: await readFile(keyFile, 'utf8'), cert: await readFile(certFile, 'utf8') },
  };
  const demo = (name: string) => pathToFileURL(join(REPO_ROOT, 'dist/demo', name)).href;
  const child = net.spawn(
    net.node,
    process.execPath,
    ['--input-type=module', '-e', SERVICES_SCRIPT({ issuer: demo('oidc-issuer.js'), sts: demo('sts-emulator.js') }), JSON.stringify(config)],
    { ipc: true },
  );
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let next = 1;
  const started = new Promise<{ issuer: string; agentSts: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the node's services did not start:\n${output}`)), 30_000);
    pending.set(0, {
      resolve: (v) => {
        clearTimeout(timer);
        resolve(v as { issuer: string; agentSts: string });
      },
      reject,
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the node's services exited with ${code}:\n${output}`));
    });
  });
  child.on('message', (m: { id: number; result?: unknown; error?: string }) => {
    const waiter = pending.get(m.id);
    pending.delete(m.id);
    if (m.error !== undefined) waiter?.reject(new Error(m.error));
    else waiter?.resolve(m.result);
  });
  const call = <T>(op: string, arg?: unknown): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ id, op, arg });
    });
  const { issuer, agentSts } = await started;
  return {
    issuerUrl: issuer,
    agentStsUrl: agentSts,
    caBundle: certFile,
    trust,
    mint: (claims) => call<string>('mint', claims),
    forge: (claims) => call<string>('forge', claims),
    startImds: () => call<string>('startImds'),
    state: () => call<NodeServicesState>('state'),
    fetch: (url, init = {}) => call<HttpAnswer>('fetch', { url, init }),
  };
}

/** The claims of a projected ServiceAccount token bound to a pod, as the kubelet asks the API server for them. */
export function projectedClaims(
  pod: { namespace: string; serviceAccount: string; name: string; uid: string },
  audience: string,
  ttlSeconds = 3600,
): TokenClaims {
  return {
    sub: `system:serviceaccount:${pod.namespace}:${pod.serviceAccount}`,
    aud: audience,
    ttlSeconds,
    extra: {
      'kubernetes.io': {
        namespace: pod.namespace,
        pod: { name: pod.name, uid: pod.uid },
        serviceaccount: { name: pod.serviceAccount, uid: `sa-${pod.serviceAccount}-uid` },
      },
    },
  };
}
