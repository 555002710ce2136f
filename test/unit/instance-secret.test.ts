import { chmod, chown, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { INSTANCE_SECRET_PATTERN } from '../../src/protocol/issuer-token-exchange.js';
import { loadInstanceSecret, readInstanceSecret } from '../../src/sources/instance-secret.js';

describe('the VM instance secret file (trust on first use)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'crosscred-instance-secret-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('is made once with mode 0600 and 43 base64url characters, then reused', async () => {
    const file = join(dir, 'instance-secret');
    const first = await loadInstanceSecret(file);
    expect(first.created).toBe(true);
    expect(first.secret).toMatch(INSTANCE_SECRET_PATTERN);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).toBe(first.secret);
    const again = await loadInstanceSecret(file);
    expect(again).toEqual({ secret: first.secret, created: false });
  });

  it('gives one secret to crosscreds that start at once', async () => {
    const file = join(dir, 'instance-secret');
    const all = await Promise.all(Array.from({ length: 8 }, () => loadInstanceSecret(file)));
    expect(new Set(all.map((a) => a.secret)).size).toBe(1);
    expect(all.filter((a) => a.created)).toHaveLength(1);
  });

  it('refuses a file open to group or others, without saying its content', async () => {
    const file = join(dir, 'instance-secret');
    const { secret } = await loadInstanceSecret(file);
    await chmod(file, 0o644);
    const err = await loadInstanceSecret(file).catch((e: Error & { code?: string }) => e);
    expect(err).toMatchObject({ code: 'CROSSCRED_ERR_INSTANCE_SECRET_FILE_INVALID' });
    expect(String((err as Error).message)).toMatch(/open to group or others \(mode 644\)/);
    expect(String((err as Error).message)).not.toContain(secret);
  });

  it('refuses a file that does not hold a secret, and a directory that does not exist', async () => {
    const file = join(dir, 'instance-secret');
    await writeFile(file, 'too short', { mode: 0o600 });
    await expect(loadInstanceSecret(file)).rejects.toMatchObject({ code: 'CROSSCRED_ERR_INSTANCE_SECRET_FILE_INVALID' });
    await expect(loadInstanceSecret(join(dir, 'missing', 'instance-secret'))).rejects.toMatchObject({
      code: 'CROSSCRED_ERR_INSTANCE_SECRET_FILE_INVALID',
    });
  });

  it('read without making (doctor): undefined when missing, and no file appears', async () => {
    const file = join(dir, 'instance-secret');
    await expect(readInstanceSecret(file)).resolves.toBeUndefined();
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
    const { secret } = await loadInstanceSecret(file);
    await expect(readInstanceSecret(file)).resolves.toBe(secret);
  });

  it.runIf(process.getuid?.() === 0)("root reads the daemon user's file without making it its own; the daemon's own read refuses a stranger's", async () => {
    const file = join(dir, 'instance-secret');
    const { secret } = await loadInstanceSecret(file);
    await chown(file, 4242, 4242);
    // doctor as root: the file of the service user (uid 4242 here) is the daemon's, and root may read it.
    await expect(readInstanceSecret(file, 'existing')).resolves.toBe(secret);
    // serve as root: a file of another user may hold a secret that user knows.
    await expect(loadInstanceSecret(file)).rejects.toThrow(/belongs to uid 4242/);
  });
});
