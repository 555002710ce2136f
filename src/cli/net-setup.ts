import { parseArgs } from 'node:util';
import { isUserOrUid, linkLocalDown, linkLocalUp } from '../host/link-local-addresses.js';
import { EXIT_USAGE } from './exit-codes.js';

export const IMDS_ADDRESS = '169.254.169.254/32';
export const CONTAINER_ADDRESS = '169.254.170.2/32';

/** `crosscred net-setup up|down`: the metadata addresses on a local interface (run as root, before and after serve). */
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
    },
    strict: true,
    allowPositionals: true,
  });
  const action = positionals[0];
  if ((action !== 'up' && action !== 'down') || positionals.length !== 1) {
    process.stderr.write("crosscred net-setup: say 'up' or 'down'\nRun 'crosscred net-setup --help' for the options.\n");
    return EXIT_USAGE;
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
  const options = {
    interfaceName: values.interface ?? 'crosscred0',
    addresses,
    localOnly: values['local-only'] ?? false,
    hopLimit: values['hop-limit'] ?? false,
    ...(metadataUser !== undefined ? { tencentMetadataOnlyFor: metadataUser } : {}),
    log: (line: string) => process.stdout.write(`crosscred net-setup: ${line}\n`),
  };
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
