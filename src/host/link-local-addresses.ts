import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Puts the metadata addresses on this host so crosscred can listen on them, as the EKS Pod
 * Identity Agent does: `169.254.169.254/32` (IMDS, which every SDK tries with no configuration)
 * and optionally `169.254.170.2/32` (the ECS container-credentials address). On Alibaba ECS
 * (metadata at 100.100.100.200) and Tencent CVM (169.254.0.23) these addresses are free. The node
 * agent's `169.254.170.23/32` and `fd00:ec2::23/128` (`net-setup --node-agent`) go the same way, and
 * so does Alibaba's ECS metadata address `100.100.100.200/32` (`net-setup --alibaba-metadata`), for
 * a network namespace or pod where crosscred serves a RAM role to SDKs that read ECS metadata.
 *
 * They go on a dedicated `dummy` link where the kernel has that type, else on the loopback.
 * Neither makes them private to the host: Linux accepts a packet for a local address whatever
 * interface it arrives on, so anything with a route to them through this host reaches crosscred
 * (every container on a Docker or Podman bridge has one: its default route). `localOnly` adds the
 * nftables rule that refuses those. Every step checks before it acts, so `up` and `down` can each
 * run any number of times (systemd's ExecStartPre/ExecStopPost).
 */
export interface LinkLocalOptions {
  readonly interfaceName: string;
  readonly addresses: readonly string[];
  /**
   * Also an nftables input rule refusing packets for these addresses that did not come from this
   * host itself. A host's own traffic to a local address is delivered through the loopback, whichever
   * link holds the address, so "arrived on lo" is exactly "sent by a process of this host".
   */
  readonly localOnly: boolean;
  /**
   * Also an nftables rule that sets the TTL of replies from these addresses to 1. It stops only a
   * client with a router between it and this host; a container on a bridge or veth of this host gets
   * the reply directly (on EC2 the host forwards for its containers, which is why the hop limit works there).
   */
  readonly hopLimit: boolean;
  /**
   * Tencent CVM only: also an nftables table that lets no process but this user's (a name or a
   * uid) reach the metadata service at 169.254.0.23, and no container forwarded through this host.
   * Tencent's metadata service has no token mode: without this, any process on the VM (or any
   * container on a bridge) can GET the CAM role's keys. Every other process loses the service too:
   * the cloud agents, cloud-init, the Tencent SDKs' own CVM role provider.
   */
  readonly tencentMetadataOnlyFor?: string;
  /**
   * What `down` takes away. `everything` (serve's set-up): the addresses, the dummy link and every
   * nftables table of crosscred's. `these-addresses` (the node agent's): only `addresses`, and the
   * dummy link only once nothing else is on it, so that a node also running `serve` keeps its
   * metadata address and its `--local-only` rule.
   */
  readonly down?: 'everything' | 'these-addresses';
  /** Where `ip` and `nft` are; injectable for a network namespace (`ip netns exec NAME …`). */
  readonly ip?: string;
  readonly nft?: string;
  readonly log: (line: string) => void;
}

/** Each rule has a table of its own, replaced whole on `up` and deleted on `down`. The hop-limit name predates the other. */
export const NFT_HOP_LIMIT_TABLE = 'crosscred_metadata';
export const NFT_LOCAL_ONLY_TABLE = 'crosscred_local_only';
export const NFT_TENCENT_METADATA_TABLE = 'crosscred_tencent_metadata';
/** The address behind `metadata.tencentyun.com` (docs/research/vm-attestation.md §4.1). */
export const TENCENT_METADATA_ADDRESS = '169.254.0.23';
/** Alibaba Cloud's ECS metadata server, which Alibaba's SDKs ask for an instance's RAM role. */
export const ALIBABA_METADATA_ADDRESS = '100.100.100.200';
/** A user name as useradd and systemd's DynamicUser make them, or a numeric uid: nothing else reaches the ruleset text. */
const USER_OR_UID = /^(?:[a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})$/;

export function isUserOrUid(text: string): boolean {
  return USER_OR_UID.test(text);
}

export async function linkLocalUp(options: LinkLocalOptions): Promise<{ device: string }> {
  const ip = options.ip ?? 'ip';
  const user = options.tencentMetadataOnlyFor;
  if (user !== undefined && !isUserOrUid(user)) throw new Error(`${JSON.stringify(user)} is not a user name or a numeric uid`);
  // Before the addresses, so that they are never reachable from outside while the rule is wanted.
  if (options.localOnly) await localOnlyUp(options);
  let device = options.interfaceName;
  if (!(await linkExists(ip, device))) {
    try {
      await run(ip, ['link', 'add', device, 'type', 'dummy']);
      options.log(`created dummy link ${device}`);
    } catch (err) {
      // A container image without iproute2 (a distroless one) gets here first.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${ip} not found: net-setup needs iproute2's ip command`);
      const stderr = String((err as { stderr?: string }).stderr ?? '');
      if (!/Unknown device type|not supported|Operation not supported/i.test(stderr))
        throw new Error(`ip link add ${device} type dummy failed: ${stderr.trim()}`);
      options.log(`this kernel has no dummy links; using the loopback (lo) instead`);
      device = 'lo';
    }
  }
  await run(ip, ['link', 'set', device, 'up']);
  const present = await addressesOn(ip, device);
  for (const address of options.addresses) {
    if (present.has(address)) {
      options.log(`${address} is already on ${device}`);
      continue;
    }
    await addAddress(ip, address, device);
    options.log(`added ${address} to ${device}`);
  }
  if (options.hopLimit) await hopLimitUp(options);
  if (options.tencentMetadataOnlyFor !== undefined) await tencentMetadataUp(options, options.tencentMetadataOnlyFor);
  return { device };
}

/**
 * Removes the addresses, the dummy link, and every nftables table of crosscred's whatever
 * `localOnly`, `hopLimit` and `tencentMetadataOnlyFor` say: a flag dropped from crosscred.env then
 * leaves no rule behind after a restart.
 */
export async function linkLocalDown(options: LinkLocalOptions): Promise<void> {
  const ip = options.ip ?? 'ip';
  const everything = (options.down ?? 'everything') === 'everything';
  for (const device of [options.interfaceName, 'lo']) {
    if (!(await linkExists(ip, device))) continue;
    const present = await addressesOn(ip, device);
    for (const address of options.addresses) {
      if (!present.has(address)) continue;
      await run(ip, ['addr', 'del', address, 'dev', device]);
      options.log(`removed ${address} from ${device}`);
    }
  }
  if (options.interfaceName !== 'lo' && (await linkExists(ip, options.interfaceName))) {
    // Only a dummy link can be one `up` made; `--interface eth0` must not delete eth0.
    // The kernel's own fe80:: address on an up link does not count.
    const others = [...(await addressesOn(ip, options.interfaceName))].filter((a) => !a.startsWith('fe80:'));
    if (!everything && others.length > 0) {
      options.log(`left link ${options.interfaceName} in place: other addresses are still on it`);
    } else if ((await linkKind(ip, options.interfaceName)) === 'dummy') {
      await run(ip, ['link', 'del', options.interfaceName]);
      options.log(`deleted link ${options.interfaceName}`);
    } else {
      options.log(`left link ${options.interfaceName} in place: it is not a dummy link`);
    }
  }
  if (!everything) return;
  await deleteTable(options, NFT_HOP_LIMIT_TABLE);
  await deleteTable(options, NFT_LOCAL_ONLY_TABLE);
  await deleteTable(options, NFT_TENCENT_METADATA_TABLE);
}

/**
 * An IPv6 address goes on with `nodad`: on any link but the loopback it would otherwise stay
 * `tentative` while duplicate address detection runs (about a second, and for ever on a link that is
 * down or has no carrier), and a `bind` to it fails with EADDRNOTAVAIL. These addresses are the
 * same on every node by design, so there is no duplicate to detect.
 */
async function addAddress(ip: string, address: string, device: string): Promise<void> {
  const ipv6 = address.includes(':');
  try {
    await run(ip, ['addr', 'add', address, 'dev', device, ...(ipv6 ? ['nodad'] : [])]);
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '').trim();
    const hint = ipv6 ? ' (IPv6 may be turned off on this host: then use --ipv4-only, and listen on the IPv4 address only)' : '';
    throw new Error(`ip addr add ${address} dev ${device} failed: ${stderr}${hint}`);
  }
}

async function linkExists(ip: string, device: string): Promise<boolean> {
  try {
    await run(ip, ['link', 'show', 'dev', device]);
    return true;
  } catch {
    return false;
  }
}

async function linkKind(ip: string, device: string): Promise<string | undefined> {
  const { stdout } = await run(ip, ['-d', '-j', 'link', 'show', 'dev', device]);
  return (JSON.parse(stdout) as Array<{ linkinfo?: { info_kind?: string } }>)[0]?.linkinfo?.info_kind;
}

/** The addresses on `device` in `ADDRESS/PREFIX` form. */
async function addressesOn(ip: string, device: string): Promise<Set<string>> {
  const { stdout } = await run(ip, ['-j', 'addr', 'show', 'dev', device]);
  const links = JSON.parse(stdout) as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>;
  return new Set(links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`)));
}

/** The IPv4 host addresses of `ADDRESS/PREFIX` entries, once each: what is local, not the prefix. */
function ipv4Hosts(addresses: readonly string[]): string[] {
  return [...new Set(addresses.filter((a) => !a.includes(':')).map((a) => a.split('/')[0]!))];
}

/**
 * The local-only chain. Rejected rather than dropped: a refused client (an SDK in a container
 * trying IMDS) fails in milliseconds and moves on down its credential chain, instead of waiting
 * out its connect timeout and retries. The reply tells the client little it could not learn anyway:
 * the address is well known and its route leads to this host.
 */
export function localOnlyRules(hosts: readonly string[]): string[] {
  const daddr = `ip daddr { ${hosts.join(', ')} } iifname != "lo"`;
  return [`${daddr} meta l4proto tcp reject with tcp reset`, `${daddr} reject with icmpx type admin-prohibited`];
}

async function localOnlyUp(options: LinkLocalOptions): Promise<void> {
  const hosts = ipv4Hosts(options.addresses);
  if (hosts.length === 0) return;
  await replaceTable(options, NFT_LOCAL_ONLY_TABLE, [
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    ...localOnlyRules(hosts).map((rule) => `    ${rule}`),
    '  }',
  ]);
  options.log(`nftables table ${NFT_LOCAL_ONLY_TABLE}: packets for ${hosts.join(', ')} from anywhere but this host are refused`);
}

/**
 * The Tencent metadata chains. Output: a local process of any other uid (root included) is refused;
 * a packet with no socket (the kernel's own) has no uid and passes. Forward: a container on a
 * bridge of this host has no uid here at all, so it is refused outright. Rejected, not dropped, so
 * that a refused client fails at once (see localOnlyRules).
 */
export function tencentMetadataRules(user: string): { output: string[]; forward: string[] } {
  const daddr = `ip daddr ${TENCENT_METADATA_ADDRESS}`;
  const refuse = (match: string) => [`${match} meta l4proto tcp reject with tcp reset`, `${match} reject with icmpx type admin-prohibited`];
  return { output: refuse(`${daddr} meta skuid != ${user}`), forward: refuse(daddr) };
}

async function tencentMetadataUp(options: LinkLocalOptions, user: string): Promise<void> {
  const rules = tencentMetadataRules(user);
  // nft resolves a user name to its uid when it loads the rules: a user that does not exist fails here, not later.
  await replaceTable(options, NFT_TENCENT_METADATA_TABLE, [
    '  chain output {',
    '    type filter hook output priority filter; policy accept;',
    ...rules.output.map((rule) => `    ${rule}`),
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    ...rules.forward.map((rule) => `    ${rule}`),
    '  }',
  ]);
  options.log(
    `nftables table ${NFT_TENCENT_METADATA_TABLE}: only user ${user} reaches the Tencent metadata service at ${TENCENT_METADATA_ADDRESS}; ` +
      'every other process and every forwarded container is refused',
  );
}

async function hopLimitUp(options: LinkLocalOptions): Promise<void> {
  const sources = ipv4Hosts(options.addresses);
  if (sources.length === 0) return;
  await replaceTable(options, NFT_HOP_LIMIT_TABLE, [
    '  chain output {',
    '    type filter hook output priority mangle; policy accept;',
    `    ip saddr { ${sources.join(', ')} } ip ttl set 1`,
    '  }',
  ]);
  options.log(`nftables table ${NFT_HOP_LIMIT_TABLE}: replies from ${sources.join(', ')} leave with TTL 1 (this stops only clients behind a router)`);
}

/**
 * Creates `table` if missing, deletes it and writes it anew, in one `nft -f` transaction: the old
 * rules stay in force until the new ones are, and a second `up` leaves exactly one copy.
 */
async function replaceTable(options: LinkLocalOptions, table: string, body: readonly string[]): Promise<void> {
  const ruleset = [`table inet ${table}`, `delete table inet ${table}`, `table inet ${table} {`, ...body, '}', ''].join('\n');
  await runWithInput(options.nft ?? 'nft', ['-f', '-'], ruleset);
}

/** Deletes `table` if it is there; without nft there is no table to delete. */
async function deleteTable(options: LinkLocalOptions, table: string): Promise<void> {
  const nft = options.nft ?? 'nft';
  try {
    await run(nft, ['list', 'table', 'inet', table]);
  } catch {
    return;
  }
  await run(nft, ['delete', 'table', 'inet', table]);
  options.log(`deleted nftables table ${table}`);
}

function runWithInput(command: string, args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, (err, _stdout, stderr) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return reject(
          new Error(
            `${command} not found: --local-only, --hop-limit and --tencent-metadata-only-for need nftables (Debian and Ubuntu: apt-get install nftables)`,
          ),
        );
      }
      reject(new Error(`${command} ${args.join(' ')} failed: ${String(stderr).trim()}`));
    });
    // A missing or failing nft closes its stdin early; the callback above reports why.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}
