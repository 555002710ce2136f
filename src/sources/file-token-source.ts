import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { NotARegularFileError, readRegularFile } from '../util/read-regular-file.js';
import { inspectJwt, STS_MAX_TOKEN_LENGTH } from './jwt-shape.js';
import type { TokenSource, WebIdentityToken } from './token-source.js';

/** Bytes read at most: a JWT STS accepts plus generous whitespace. More means it is not our token. */
const MAX_FILE_BYTES = STS_MAX_TOKEN_LENGTH + 4096;

/**
 * A JWT in a file that something else rotates in place: the kubelet's projected ServiceAccount
 * token (EKS IRSA, any cluster), ACK RRSA, TKE pod identity. Read fresh on every call, because
 * the writer replaces it (the kubelet at 80% of the token's life) without telling anyone.
 */
export class FileTokenSource implements TokenSource {
  readonly description: string;

  constructor(
    private readonly path: string,
    private readonly clock: Clock,
  ) {
    this.description = `token file ${path}`;
  }

  async getToken(): Promise<WebIdentityToken> {
    const raw = await this.#readBounded();
    const token = raw.trim();
    const claims = inspectJwt(token, this.clock.wallNow(), this.description);
    return { token, expiresAtWall: claims.exp * 1000, claims };
  }

  async #readBounded(): Promise<string> {
    let data: Buffer | undefined;
    try {
      // Only a regular file (or a symlink to one), opened without blocking: a FIFO or a device at
      // the path must fail this read, not hang it (see read-regular-file.ts).
      data = await readRegularFile(this.path, MAX_FILE_BYTES);
    } catch (err) {
      if (err instanceof NotARegularFileError) {
        throw new CrosscredError(
          'TOKEN_FILE_UNREADABLE',
          `${this.description} is ${err.kind}, not a regular file; it is read afresh before every exchange, so it must be a file (or a symlink to one); for a program's output use --token-command`,
        );
      }
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
      throw new CrosscredError('TOKEN_FILE_UNREADABLE', `cannot read ${this.description} (${code})`);
    }
    if (data === undefined) {
      throw new CrosscredError('TOKEN_TOO_LARGE', `${this.description} is larger than ${MAX_FILE_BYTES} bytes`);
    }
    return data.toString('utf8');
  }
}
