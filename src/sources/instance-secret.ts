import { randomBytes } from 'node:crypto';
import { existsSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { CrosscredError } from '../core/errors.js';
import { INSTANCE_SECRET_BYTES, INSTANCE_SECRET_PATTERN } from '../protocol/issuer-token-exchange.js';
import { readRegularFileChecked } from '../util/read-regular-file.js';
import { writeNewPrivateFile } from '../util/write-new-private-file.js';

/**
 * The VM's instance secret for trust on first use (src/protocol/issuer-token-exchange.ts,
 * docs/issuer.md#trust-on-first-use): made once, kept in a 0600 file, sent with every token
 * request. Whoever reads the file can attest as this instance once it is bound, so the file is
 * refused when group or others may open it, or when it belongs to another user than crosscred's
 * or root (who could then have planted a secret they know).
 */

/** The default file: under the state directory the systemd unit gives (StateDirectory=crosscred). */
export const DEFAULT_INSTANCE_SECRET_FILE = '/var/lib/crosscred/instance-secret';

/** A secret is 43 characters; a file this long is not one of ours (bytes). */
const MAX_FILE_BYTES = 1024;

const invalid = (why: string) => new CrosscredError('INSTANCE_SECRET_FILE_INVALID', why);

/**
 * The file a VM source uses: the one configured, else the default when its directory (the systemd
 * unit's StateDirectory) exists. Undefined on a development machine: no secret is sent, and an
 * issuer with trustOnFirstUse says so (400: the secret is required).
 */
export function instanceSecretFileFor(configured: string | undefined): string | undefined {
  if (configured !== undefined) return configured;
  return existsSync(dirname(DEFAULT_INSTANCE_SECRET_FILE)) ? DEFAULT_INSTANCE_SECRET_FILE : undefined;
}

/**
 * How a process holds the secret:
 * - `create`: the daemon's. The file is made when missing, and must belong to this process's user
 *   or root, so that nobody else can have planted a secret they know.
 * - `existing`: a checking command's (`doctor`, often run as root). It sends the secret the daemon
 *   made, if there is one, and never makes a file: one made by root would lock the daemon's own
 *   user out of its secret. Run as root, it also reads the daemon user's file, which root could
 *   read anyway.
 */
export type InstanceSecretUse = 'create' | 'existing';

/** Reads the secret from `path`, or makes and writes one (mode 0600) when the file does not exist. */
export async function loadInstanceSecret(path: string): Promise<{ secret: string; created: boolean }> {
  const existing = await readInstanceSecret(path, 'create');
  if (existing !== undefined) return { secret: existing, created: false };
  const created = await create(path);
  // undefined: another crosscred made the file first; use what it wrote.
  return created === undefined ? loadInstanceSecret(path) : { secret: created, created: true };
}

/** The secret in `path`, or undefined when there is no such file; never makes one. */
export async function readInstanceSecret(path: string, use: InstanceSecretUse = 'existing'): Promise<string | undefined> {
  let bytes: Buffer | undefined;
  try {
    ({ bytes } = await readRegularFileChecked(path, MAX_FILE_BYTES, (info) => checkPrivate(path, info, use)));
  } catch (err) {
    if (err instanceof CrosscredError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw invalid(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const text = bytes?.toString('utf8').trim();
  if (text === undefined || !INSTANCE_SECRET_PATTERN.test(text))
    throw invalid(`${path} does not hold an instance secret (43 base64url characters); delete it to have one made, then reset the binding at the issuer`);
  return text;
}

/** Checked on the descriptor the bytes are read from, before any is read. */
function checkPrivate(path: string, info: Stats, use: InstanceSecretUse): void {
  const uid = process.getuid?.();
  const ownerChecked = uid !== undefined && !(use === 'existing' && uid === 0);
  if (ownerChecked && info.uid !== uid && info.uid !== 0) throw invalid(`${path} belongs to uid ${info.uid}, not to crosscred's uid ${uid} or root`);
  if ((info.mode & 0o077) !== 0) throw invalid(`${path} is open to group or others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
}

/**
 * Writes a new secret to a private temporary file and hard-links it into place, which fails if the
 * name exists: the file appears complete or not at all, and an existing secret is never replaced
 * (the issuer would refuse the new one). Undefined when the file already exists.
 */
async function create(path: string): Promise<string | undefined> {
  const secret = randomBytes(INSTANCE_SECRET_BYTES).toString('base64url');
  try {
    return (await writeNewPrivateFile(path, secret)) ? secret : undefined;
  } catch (err) {
    throw invalid(`cannot create ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
