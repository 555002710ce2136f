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
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new NotARegularFileError(path, kindOf(info));
    const buffer = Buffer.alloc(maxBytes + 1);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, null);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled > maxBytes ? undefined : buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
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
