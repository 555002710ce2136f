import { parseArgs } from 'node:util';
import { ALIBABA_METADATA_ADDRESS, isUserOrUid, type LinkLocalOptions, linkLocalDown, linkLocalUp } from '../host/link-local-addresses.js';
import { POD_IDENTITY_IPV4, POD_IDENTITY_IPV6 } from '../protocol/pod-identity.js';
import { EXIT_USAGE } from './exit-codes.js';

export const IMDS_ADDRESS = '169.254.169.254/32';
export const CONTAINER_ADDRESS = '169.254.170.2/32';
export const NODE_AGENT_ADDRESSES = [`${POD_IDENTITY_IPV4}/32`, `${POD_IDENTITY_IPV6}/128`] as const;
export const ALIBABA_METADATA_CIDR = `${ALIBABA_METADATA_ADDRESS}/32`;

/**
 * `crosscred net-setup up|down`: the metadata addresses on a local interface (run as root, before and after serve).
 * `crosscred net-setup [up|down] --node-agent`: the node agent's addresses instead (the DaemonSet's init container).
 * `crosscred net-setup up|down --alibaba-metadata`: Alibaba's ECS metadata address instead (a namespace or pod serving a RAM role).
 */
export async function runNetSetup(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      interface: { type: 'string' },
      address: { type: 'string', multiple: true },
      'container-address': { type: 'boolean' },
      'local-only': { type: 'boolean' },
      'hop-limit': { type: 'boolean' },
      'tencent-metadata-only-for': { type: 'string' },
      'node-agent': { type: 'boolean' },
      'ipv4-only': { type: 'boolean' },
      'alibaba-metadata': { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  const nodeAgent = values['node-agent'] ?? false;
  // The init container says just `net-setup --node-agent` (or `--alibaba-metadata`): there, `up` is what is meant.
  const action = positionals[0] ?? (nodeAgent || values['alibaba-metadata'] ? 'up' : undefined);
  if ((action !== 'up' && action !== 'down') || positionals.length > 1) {
    process.stderr.write("crosscred net-setup: say 'up' or 'down'\nRun 'crosscred net-setup --help' for the options.\n");
    return EXIT_USAGE;
  }
  if (values['ipv4-only'] && !nodeAgent) {
    process.stderr.write('crosscred net-setup: --ipv4-only goes with --node-agent\n');
    return EXIT_USAGE;
  }
  if (values['alibaba-metadata']) {
    // Only the one address: --address says the same by hand, and the nftables flags go with serve's own set-up.
    const clash = (['node-agent', 'address', 'container-address', 'local-only', 'hop-limit', 'tencent-metadata-only-for'] as const).find(
      (name) => values[name] !== undefined,
    );
    if (clash) {
      process.stderr.write(`crosscred net-setup: --${clash} does not go with --alibaba-metadata, which sets up only ${ALIBABA_METADATA_CIDR}\n`);
      return EXIT_USAGE;
    }
    return apply(action, {
      interfaceName: values.interface ?? 'crosscred0',
      addresses: [ALIBABA_METADATA_CIDR],
      localOnly: false,
      hopLimit: false,
      down: 'these-addresses',
      log,
    });
  }
  if (nodeAgent) {
    // Pods reach the node agent over their veths: --local-only would refuse exactly them.
    const clash = (['address', 'container-address', 'local-only', 'hop-limit', 'tencent-metadata-only-for'] as const).find(
      (name) => values[name] !== undefined,
    );
    if (clash) {
      process.stderr.write(`crosscred net-setup: --${clash} does not go with --node-agent, which sets up only the node agent's addresses\n`);
      return EXIT_USAGE;
    }
    return apply(action, {
      interfaceName: values.interface ?? 'crosscred0',
      addresses: values['ipv4-only'] ? [NODE_AGENT_ADDRESSES[0]] : [...NODE_AGENT_ADDRESSES],
      localOnly: false,
      hopLimit: false,
      down: 'these-addresses',
      log,
    });
  }
  const addresses = values.address?.length ? values.address : [IMDS_ADDRESS, ...(values['container-address'] ? [CONTAINER_ADDRESS] : [])];
  for (const a of addresses) {
    if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(a)) {
      process.stderr.write(`crosscred net-setup: ${JSON.stringify(a)} is not an IPv4 address with a prefix length, like ${IMDS_ADDRESS}\n`);
      return EXIT_USAGE;
    }
  }
  const metadataUser = values['tencent-metadata-only-for'];
  if (metadataUser !== undefined && !isUserOrUid(metadataUser)) {
    process.stderr.write(`crosscred net-setup: --tencent-metadata-only-for wants a user name or a numeric uid, not ${JSON.stringify(metadataUser)}\n`);
    return EXIT_USAGE;
  }
  return apply(action, {
    interfaceName: values.interface ?? 'crosscred0',
    addresses,
    localOnly: values['local-only'] ?? false,
    hopLimit: values['hop-limit'] ?? false,
    ...(metadataUser !== undefined ? { tencentMetadataOnlyFor: metadataUser } : {}),
    log,
  });
}

function log(line: string): void {
  process.stdout.write(`crosscred net-setup: ${line}\n`);
}

async function apply(action: 'up' | 'down', options: LinkLocalOptions): Promise<number> {
  try {
    if (action === 'up') await linkLocalUp(options);
    else await linkLocalDown(options);
  } catch (err) {
    // ip and nft failures are the operator's to fix (a missing tool, no root): say what failed, no stack.
    process.stderr.write(`crosscred net-setup ${action}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  return 0;
}
