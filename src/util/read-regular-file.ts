import { constants, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * Reads at most `maxBytes` of a file that must be a regular file (or a symlink to one, as the
 * kubelet's projected tokens are). Resolves with the bytes, or with `undefined` when the file is
 * larger. Throws the file-system error as it comes (ENOENT, EACCES…), or a NotARegularFileError.
 *
 * The file is opened non-blocking and checked with fstat before anything is read, because the
 * path is whatever is on disk at the time, and:
 * - opening a FIFO for reading blocks until some writer opens it. Node opens files on libuv's
 *   threadpool (four threads, shared with DNS lookups and every other file operation), so each
 *   attempt would hold a thread for good: a few retries stall the whole process, which then
 *   cannot even exit. Non-blocking, the open returns at once;
 * - a character device such as /dev/zero or /dev/urandom never ends;
 * - a directory, socket or device is never a token that someone wrote.
 */
export async function readRegularFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
  return (await readRegularFileChecked(path, maxBytes)).bytes;
}

/**
 * Like readRegularFile, and also resolves with what fstat said of the very descriptor the bytes
 * were read from. A check of ownership or mode made on these Stats is about the bytes read: a
 * `stat` of the path before or after the read could see another file swapped in between.
 * `check`, when given, runs on those Stats before anything is read, and may throw to refuse.
 */
export async function readRegularFileChecked(
  path: string,
  maxBytes: number,
  check?: (info: Stats) => void,
): Promise<{ bytes: Buffer | undefined; info: Stats }> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new NotARegularFileError(path, kindOf(info));
    check?.(info);
    const buffer = Buffer.alloc(maxBytes + 1);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, null);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return { bytes: filled > maxBytes ? undefined : buffer.subarray(0, filled), info };
  } finally {
    await handle.close();
  }
}

/**
 * Why a file holding a secret (a private key) cannot be trusted, or undefined when it can: it
 * must belong to this process's user or root, and give group and others no permission at all,
 * as OpenSSH requires of its keys. `info` should come from fstat on the open descriptor.
 */
export function privateFileProblem(path: string, info: Stats): string | undefined {
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid && info.uid !== 0) return `${path} belongs to uid ${info.uid}, not to crosscred's uid ${uid} or root`;
  if ((info.mode & 0o077) !== 0) return `${path} is open to group or others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`;
  return undefined;
}

export class NotARegularFileError extends Error {
  /** Stands where an errno code would, in messages that show one. */
  readonly code: string;

  constructor(
    readonly path: string,
    /** What the path is instead: "a FIFO", "a directory"… */
    readonly kind: string,
  ) {
    super(`${path} is ${kind}, not a regular file`);
    this.name = 'NotARegularFileError';
    this.code = `${kind}, not a regular file`;
  }
}

function kindOf(info: Stats): string {
  if (info.isFIFO()) return 'a FIFO';
  if (info.isDirectory()) return 'a directory';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  if (info.isSocket()) return 'a socket';
  return 'an unknown kind of file';
}
