import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { CrosscredError } from '../errors.js';

/** Longest secret read from the file; a longer file is not one of ours. */
const MAX_SECRET_BYTES = 4096;

/**
 * The container endpoint's shared secret (AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE] on the client
 * side). Compared in constant time: both sides are hashed to 32 bytes first, so neither the
 * secret's length nor its content leaks through timing.
 */
export class ContainerSecret {
  readonly #digest: Buffer;

  private constructor(secret: string) {
    this.#digest = sha256(secret);
  }

  matches(header: string | undefined): boolean {
    return header !== undefined && timingSafeEqual(sha256(header), this.#digest);
  }

  /**
   * Reads the secret from `path`, or, when the file does not exist, generates one and writes it
   * with mode 0600 and no trailing newline (the JS SDK and botocore reject a token file that ends
   * in one). Returns the secret's source for the start-up log line.
   */
  static async load(path: string): Promise<{ secret: ContainerSecret; generated: boolean }> {
    let text: string;
    try {
      const data = await readFile(path);
      if (data.length > MAX_SECRET_BYTES) throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `${path} is larger than ${MAX_SECRET_BYTES} bytes`);
      text = data.toString('utf8').trim();
    } catch (err) {
      if (err instanceof CrosscredError) throw err;
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      return { secret: new ContainerSecret(await generate(path)), generated: true };
    }
    if (text.length === 0) throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `${path} is empty`);
    if (/[\r\n]/.test(text) || !/^[\x21-\x7e]+$/.test(text)) {
      throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `${path} must hold one line of printable ASCII (it is sent as an HTTP header)`);
    }
    return { secret: new ContainerSecret(text), generated: false };
  }
}

async function generate(path: string): Promise<string> {
  const secret = randomBytes(32).toString('base64url');
  let handle;
  try {
    // O_EXCL: if another process created the file meanwhile, fail rather than overwrite its secret.
    handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    await handle.writeFile(secret);
  } catch (err) {
    throw new CrosscredError('AUTH_TOKEN_FILE_INVALID', `cannot create ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    await handle?.close();
  }
  return secret;
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
