import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Puts the metadata addresses on this host so crosscred can listen on them, as the EKS Pod
 * Identity Agent does: `169.254.169.254/32` (IMDS, which every SDK tries with no configuration)
 * and optionally `169.254.170.2/32` (the ECS container-credentials address). On Alibaba ECS
 * (metadata at 100.100.100.200) and Tencent CVM (169.254.0.23) these addresses are free.
 *
 * They go on a dedicated `dummy` link where the kernel has that type, else on the loopback.
 * Both are local-only: nothing off the host can route to them. Every step checks before it
 * acts, so `up` and `down` can each run any number of times (systemd's ExecStartPre/ExecStopPost).
 */
export interface LinkLocalOptions {
  readonly interfaceName: string;
  readonly addresses: readonly string[];
  /** Also install an nftables rule that sets the TTL of replies from these addresses to 1, like IMDSv2's hop limit. */
  readonly hopLimit: boolean;
  /** Where `ip` and `nft` are; injectable for a network namespace (`ip netns exec NAME …`). */
  readonly ip?: string;
  readonly nft?: string;
  readonly log: (line: string) => void;
}

export const NFT_TABLE = 'crosscred_metadata';

export async function linkLocalUp(options: LinkLocalOptions): Promise<{ device: string }> {
  const ip = options.ip ?? 'ip';
  let device = options.interfaceName;
  if (!(await linkExists(ip, device))) {
    try {
      await run(ip, ['link', 'add', device, 'type', 'dummy']);
      options.log(`created dummy link ${device}`);
    } catch (err) {
      const stderr = String((err as { stderr?: string }).stderr ?? '');
      if (!/Unknown device type|not supported|Operation not supported/i.test(stderr)) throw new Error(`ip link add ${device} type dummy failed: ${stderr.trim()}`);
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
    await run(ip, ['addr', 'add', address, 'dev', device]);
    options.log(`added ${address} to ${device}`);
  }
  if (options.hopLimit) await hopLimitUp(options);
  return { device };
}

export async function linkLocalDown(options: LinkLocalOptions): Promise<void> {
  const ip = options.ip ?? 'ip';
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
    await run(ip, ['link', 'del', options.interfaceName]);
    options.log(`deleted link ${options.interfaceName}`);
  }
  if (options.hopLimit) await hopLimitDown(options);
}

async function linkExists(ip: string, device: string): Promise<boolean> {
  try {
    await run(ip, ['link', 'show', 'dev', device]);
    return true;
  } catch {
    return false;
  }
}

/** The addresses on `device` in `ADDRESS/PREFIX` form. */
async function addressesOn(ip: string, device: string): Promise<Set<string>> {
  const { stdout } = await run(ip, ['-j', 'addr', 'show', 'dev', device]);
  const links = JSON.parse(stdout) as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>;
  return new Set(links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`)));
}

/** One table of our own, replaced whole each time: idempotent, and removed by deleting it. */
async function hopLimitUp(options: LinkLocalOptions): Promise<void> {
  const sources = options.addresses.filter((a) => !a.includes(':')).map((a) => a.split('/')[0]!);
  if (sources.length === 0) return;
  const ruleset = [
    `table inet ${NFT_TABLE} {`,
    '  chain output {',
    '    type filter hook output priority mangle; policy accept;',
    `    ip saddr { ${sources.join(', ')} } ip ttl set 1`,
    '  }',
    '}',
  ].join('\n');
  await hopLimitDown(options);
  await runWithInput(options.nft ?? 'nft', ['-f', '-'], ruleset);
  options.log(`nftables table ${NFT_TABLE}: replies from ${sources.join(', ')} leave with TTL 1`);
}

async function hopLimitDown(options: LinkLocalOptions): Promise<void> {
  const nft = options.nft ?? 'nft';
  try {
    await run(nft, ['list', 'table', 'inet', NFT_TABLE]);
  } catch {
    return;
  }
  await run(nft, ['delete', 'table', 'inet', NFT_TABLE]);
  options.log(`deleted nftables table ${NFT_TABLE}`);
}

function runWithInput(command: string, args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, (err, _stdout, stderr) => (err ? reject(new Error(`${command} ${args.join(' ')} failed: ${String(stderr).trim()}`)) : resolve()));
    child.stdin?.end(input);
  });
}
