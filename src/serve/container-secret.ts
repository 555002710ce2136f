import { randomBytes, timingSafeEqual } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { CrosscredError } from '../core/errors.js';
import { readRegularFile } from '../util/read-regular-file.js';
import { writeNewPrivateFile } from '../util/write-new-private-file.js';

/** Longest secret read from the file; a longer file is not one of ours. */
const MAX_SECRET_BYTES = 4096;
/** Shortest secret accepted: anything shorter is guessable (a generated one has 43 characters). */
export const MIN_SECRET_LENGTH = 16;

/**
 * The container endpoint's shared secret (AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE] on the client
 * side). Compared in constant time over its bytes. Only its length can leak through timing (a
 * generated secret is always 43 characters), which is why no hash is computed per request: the
 * benchmark profile showed SHA-256 of every Authorization header at about 10% of the hot path.
 */
export class ContainerSecret {
  readonly #secret: Buffer;

  private constructor(secret: string) {
    this.#secret = Buffer.from(secret, 'utf8');
  }

  matches(header: string | undefined): boolean {
    if (header === undefined || Buffer.byteLength(header, 'utf8') !== this.#secret.length) return false;
    return timingSafeEqual(Buffer.from(header, 'utf8'), this.#secret);
  }

  /**
   * Reads the secret from `path`, or, when the file does not exist, generates one and writes it
   * with mode 0600 and no trailing newline (the JS SDK and botocore reject a token file that ends
   * in one). Returns the secret's source for the start-up log line.
   */
  static async load(path: string): Promise<{ secret: ContainerSecret; generated: boolean }> {
    let data: Buffer | undefined;
    try {
      await checkOwnership(path);
      data = await readRegularFile(path, MAX_SECRET_BYTES);
    } catch (err) {
      if (err instanceof CrosscredError) throw err;
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      const created = await generate(path);
      // undefined: another process created the file first; use what it wrote.
      return created === undefined ? ContainerSecret.load(path) : { secret: new ContainerSecret(created), generated: true };
    }
    if (data === undefined) throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `${path} is larger than ${MAX_SECRET_BYTES} bytes`);
    const text = data.toString('utf8').trim();
    if (text.length === 0) throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `${path} is empty`);
    if (/[\r\n]/.test(text) || !/^[\x21-\x7e]+$/.test(text)) {
      throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `${path} must hold one line of printable ASCII (it is sent as an HTTP header)`);
    }
    if (text.length < MIN_SECRET_LENGTH) {
      throw new CrosscredError(
        'AUTH_TOKEN_FILE_INVALID',
        `${path} holds a secret of ${text.length} characters; use at least ${MIN_SECRET_LENGTH} (or delete the file to have one generated)`,
      );
    }
    return { secret: new ContainerSecret(text), generated: false };
  }
}

/**
 * An existing secret file is trusted only if nobody but its owner (this daemon's user, or root)
 * could have written it, or can read it: otherwise another local user could plant a secret they
 * know, swap it, or simply read it and fetch the credentials. Like OpenSSH with private keys, any
 * group or other permission is refused (the generated file is 0600; applications that read it run
 * as the same user, see k8s/base/deployment.yaml).
 */
async function checkOwnership(path: string): Promise<void> {
  const info = await stat(path);
  if (!info.isFile()) throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `${path} is not a regular file`);
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid && info.uid !== 0) {
    throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `${path} belongs to uid ${info.uid}, not to crosscred's uid ${uid} or root`);
  }
  if ((info.mode & 0o077) !== 0) {
    throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `${path} is open to group or others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
  }
}

/**
 * Writes a new secret; undefined when the file already exists. The secret is written to a private
 * temporary file first and hard-linked into place, which fails if the name exists: the file appears
 * complete or not at all, and an existing secret is never overwritten.
 */
async function generate(path: string): Promise<string | undefined> {
  const secret = randomBytes(32).toString('base64url');
  try {
    return (await writeNewPrivateFile(path, secret)) ? secret : undefined;
  } catch (err) {
    throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `cannot create ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
