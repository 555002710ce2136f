import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, unlink } from 'node:fs/promises';

/**
 * Writes `content` to `path` with mode 0600, only if `path` does not exist yet; false when it does.
 * The content goes to a private temporary file first, which is then hard-linked into place: linking
 * fails if the name exists, so the file appears complete or not at all, and an existing file (a
 * secret another process made a moment ago) is never replaced. Other errors are thrown as they come
 * (with their errno `code`), for the caller to word.
 */
export async function writeNewPrivateFile(path: string, content: string): Promise<boolean> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
