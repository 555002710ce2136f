import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POD_IDENTITY_IPV4, POD_IDENTITY_IPV6 } from '../../src/protocol/pod-identity.js';
import { CLI_ARGS, CLI_EXEC } from '../support/chain.js';

/**
 * `crosscred net-setup --node-agent` on a "node" of our own: a network namespace, with a second
 * namespace standing in for a pod, joined to it by a veth pair and routed to the node agent's two
 * addresses through the node, as a CNI plugin routes a pod. A plain HTTP server inside the node
 * binds port 80 on both addresses (as `crosscred node-agent` does) and the pod must reach it on
 * both. Both namespaces are deleted afterwards, also on failure. Traffic never leaves them.
 */
const run = promisify(execFile);
const NODE = `crosscred-na-node-${process.pid}`;
const POD = `crosscred-na-pod-${process.pid}`;
// The node's and the pod's ends of the veth (interface names live per namespace, so fixed names do).
const NODE_VETH = 'veth-node';
const POD_VETH = 'veth-pod';
const V4 = `${POD_IDENTITY_IPV4}/32`;
const V6 = `${POD_IDENTITY_IPV6}/128`;

let unavailable: string | undefined;
const servers: ChildProcess[] = [];

async function netSetup(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run('ip', ['netns', 'exec', NODE, CLI_EXEC, ...CLI_ARGS, 'net-setup', ...args]);
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: e.code ?? -1 };
  }
}

interface AddressInfo {
  local: string;
  prefixlen: number;
  tentative?: boolean;
  dadfailed?: boolean;
}

async function addressInfo(device: string): Promise<AddressInfo[]> {
  const { stdout } = await run('ip', ['-n', NODE, '-j', 'addr', 'show', 'dev', device]);
  return (JSON.parse(stdout) as Array<{ addr_info?: AddressInfo[] }>).flatMap((l) => l.addr_info ?? []);
}

async function addressesOn(device: string): Promise<string[]> {
  return (await addressInfo(device)).map((a) => `${a.local}/${a.prefixlen}`);
}

/** Where net-setup put the addresses: its dummy link where the kernel has them, else the loopback. */
async function agentDevice(): Promise<string> {
  return run('ip', ['-n', NODE, 'link', 'show', 'dev', 'crosscred0']).then(
    () => 'crosscred0',
    () => 'lo',
  );
}

/**
 * Starts, inside the node, a plain HTTP server bound to port 80 of both agent addresses; resolves
 * once both binds succeeded, rejects with the bind error (EADDRNOTAVAIL for a tentative address).
 */
function startServer(): Promise<ChildProcess> {
  const script = `
    const http = require('node:http');
    let up = 0;
    for (const host of ['${POD_IDENTITY_IPV4}', '${POD_IDENTITY_IPV6}']) {
      const server = http.createServer((req, res) => res.end('agent at ' + host));
      server.on('error', (err) => { process.stdout.write('ERROR ' + host + ' ' + err.code + '\\n'); process.exit(1); });
      server.listen(80, host, () => { if (++up === 2) process.stdout.write('LISTENING\\n'); });
    }`;
  const child = spawn('ip', ['netns', 'exec', NODE, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  servers.push(child);
  return new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('LISTENING')) resolve(child);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}: ${output}`)));
  });
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** GETs `url` from inside the pod namespace and returns the body (a failure rejects with the reason). */
async function fetchFromPod(url: string): Promise<string> {
  const script = `fetch(${JSON.stringify(url)}).then(async (r) => process.stdout.write(r.status + ' ' + (await r.text())), (e) => { process.stderr.write(String(e.cause ?? e)); process.exit(1); })`;
  const { stdout } = await run('ip', ['netns', 'exec', POD, process.execPath, '-e', script], { timeout: 20_000 });
  return stdout;
}

beforeAll(async () => {
  try {
    await run('ip', ['netns', 'add', NODE]);
  } catch (err) {
    unavailable = `cannot create a network namespace here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`;
    if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(unavailable);
    return;
  }
  await run('ip', ['netns', 'add', POD]);
  const node = (...args: string[]) => run('ip', ['-n', NODE, ...args]);
  const pod = (...args: string[]) => run('ip', ['-n', POD, ...args]);
  await node('link', 'set', 'lo', 'up');
  await pod('link', 'set', 'lo', 'up');
  await node('link', 'add', NODE_VETH, 'type', 'veth', 'peer', 'name', POD_VETH, 'netns', POD);
  await node('addr', 'add', '10.200.0.1/30', 'dev', NODE_VETH);
  await pod('addr', 'add', '10.200.0.2/30', 'dev', POD_VETH);
  await node('addr', 'add', 'fd99::1/64', 'dev', NODE_VETH, 'nodad');
  await pod('addr', 'add', 'fd99::2/64', 'dev', POD_VETH, 'nodad');
  await node('link', 'set', NODE_VETH, 'up');
  await pod('link', 'set', POD_VETH, 'up');
  // As a CNI plugin does: the pod reaches the agent's addresses through the node's end of its veth.
  await pod('route', 'add', V4, 'via', '10.200.0.1', 'dev', POD_VETH);
  await pod('-6', 'route', 'add', V6, 'via', 'fd99::1', 'dev', POD_VETH);
}, 30_000);

afterAll(async () => {
  await Promise.all(servers.map(stop));
  if (unavailable) return;
  await run('ip', ['netns', 'del', POD]).catch(() => undefined);
  await run('ip', ['netns', 'del', NODE]).catch(() => undefined);
});

describe('crosscred net-setup --node-agent', () => {
  it('puts both agent addresses on the node, usable at once, and a second run changes nothing', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const first = await netSetup('--node-agent');
    expect(first.code, first.stderr).toBe(0);
    const second = await netSetup('--node-agent');
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`${V4} is already on`);
    expect(second.stdout).toContain(`${V6} is already on`);
    const device = await agentDevice();
    const info = await addressInfo(device);
    expect(info.map((a) => `${a.local}/${a.prefixlen}`)).toEqual(expect.arrayContaining([V4, V6]));
    // Exactly one copy of each, and the IPv6 one not waiting for duplicate address detection.
    expect(info.filter((a) => a.local === POD_IDENTITY_IPV6)).toHaveLength(1);
    expect(info.find((a) => a.local === POD_IDENTITY_IPV6)).not.toHaveProperty('tentative');
  });

  it('lets a pod on a veth reach a server bound on port 80 of both addresses', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const server = await startServer();
    try {
      expect(await fetchFromPod(`http://${POD_IDENTITY_IPV4}/v1/credentials/x`)).toBe(`200 agent at ${POD_IDENTITY_IPV4}`);
      expect(await fetchFromPod(`http://[${POD_IDENTITY_IPV6}]/v1/credentials/x`)).toBe(`200 agent at ${POD_IDENTITY_IPV6}`);
    } finally {
      await stop(server);
    }
  });

  it("'down --node-agent' removes just its two addresses, any number of times", async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    // serve's metadata address on the same node must survive the node agent's clean-up.
    const serve = await netSetup('up');
    expect(serve.code, serve.stderr).toBe(0);
    for (let i = 0; i < 2; i++) {
      const down = await netSetup('down', '--node-agent');
      expect(down.code, down.stderr).toBe(0);
    }
    const device = await agentDevice();
    const left = await addressesOn(device);
    expect(left).not.toContain(V4);
    expect(left).not.toContain(V6);
    expect(left).toContain('169.254.169.254/32');
    expect(await netSetup('down')).toMatchObject({ code: 0 });
    // Nothing can listen there any more.
    await expect(startServer()).rejects.toThrow(/EADDRNOTAVAIL/);
  });

  it('puts the IPv6 address on a veth without it staying tentative (nodad)', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    // An existing link named by --interface is used as it is: here the node's end of the pod's veth,
    // where an address added without nodad stays tentative and a bind to it fails.
    const up = await netSetup('--node-agent', '--interface', NODE_VETH);
    expect(up.code, up.stderr).toBe(0);
    const v6 = (await addressInfo(NODE_VETH)).find((a) => a.local === POD_IDENTITY_IPV6);
    expect(v6).toBeDefined();
    expect(v6).not.toHaveProperty('tentative');
    const server = await startServer();
    try {
      expect(await fetchFromPod(`http://[${POD_IDENTITY_IPV6}]/`)).toBe(`200 agent at ${POD_IDENTITY_IPV6}`);
    } finally {
      await stop(server);
    }
    const down = await netSetup('down', '--node-agent', '--interface', NODE_VETH);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain(`left link ${NODE_VETH} in place`);
    expect(await addressesOn(NODE_VETH)).toEqual(expect.arrayContaining(['10.200.0.1/30', 'fd99::1/64']));
    expect(await addressesOn(NODE_VETH)).not.toContain(V6);
  });

  it('--ipv4-only adds only the IPv4 address', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const up = await netSetup('up', '--node-agent', '--ipv4-only');
    expect(up.code, up.stderr).toBe(0);
    const present = await addressesOn(await agentDevice());
    expect(present).toContain(V4);
    expect(present).not.toContain(V6);
    expect(await netSetup('down', '--node-agent')).toMatchObject({ code: 0 });
  });

  it('refuses flags that would lock pods out or do not belong', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const localOnly = await netSetup('--node-agent', '--local-only');
    expect(localOnly.code).toBe(2);
    expect(localOnly.stderr).toContain('--local-only does not go with --node-agent');
    const ipv4Only = await netSetup('up', '--ipv4-only');
    expect(ipv4Only.code).toBe(2);
    expect(ipv4Only.stderr).toContain('--ipv4-only goes with --node-agent');
    // Neither touched the node.
    expect(await addressesOn(await agentDevice())).not.toContain(V4);
  });

  it('says that iproute2 is missing when there is no ip command (a distroless image)', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const noIp = await run('ip', ['netns', 'exec', NODE, 'env', 'PATH=/nonexistent', CLI_EXEC, ...CLI_ARGS, 'net-setup', '--node-agent']).then(
      () => undefined,
      (err: { code?: number; stderr?: string }) => err,
    );
    expect(noIp?.code).toBe(1);
    expect(noIp?.stderr).toContain("net-setup needs iproute2's ip command");
  });
});
