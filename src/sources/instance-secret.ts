import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
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

/** Reads the secret from `path`, or makes and writes one (mode 0600) when the file does not exist. */
export async function loadInstanceSecret(path: string): Promise<{ secret: string; created: boolean }> {
  let bytes: Buffer | undefined;
  try {
    ({ bytes } = await readRegularFileChecked(path, MAX_FILE_BYTES, (info) => checkPrivate(path, info)));
  } catch (err) {
    if (err instanceof CrosscredError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw invalid(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    const created = await create(path);
    // undefined: another crosscred made the file first; use what it wrote.
    return created === undefined ? loadInstanceSecret(path) : { secret: created, created: true };
  }
  const text = bytes?.toString('utf8').trim();
  if (text === undefined || !INSTANCE_SECRET_PATTERN.test(text))
    throw invalid(`${path} does not hold an instance secret (43 base64url characters); delete it to have one made, then reset the binding at the issuer`);
  return { secret: text, created: false };
}

/** Checked on the descriptor the bytes are read from, before any is read. */
function checkPrivate(path: string, info: Stats): void {
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid && info.uid !== 0) throw invalid(`${path} belongs to uid ${info.uid}, not to crosscred's uid ${uid} or root`);
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
