import { open } from 'node:fs/promises';

/**
 * Reads at most `maxBytes` of a file. Resolves with the bytes, or with `undefined` when the file is
 * larger (so `/dev/zero` or a log file given by mistake costs at most maxBytes + 1 of memory).
 * File-system errors are thrown as they come (ENOENT, EACCES…), for the caller to word.
 */
export async function readBoundedFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
  const handle = await open(path, 'r');
  try {
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
