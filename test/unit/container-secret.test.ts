import { chmod, chown, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerSecret } from '../../src/serve/container-secret.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'crosscred-secret-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function loadError(path: string): Promise<string> {
  try {
    await ContainerSecret.load(path);
  } catch (err) {
    expect((err as { code: string }).code).toBe('CROSSCRED_ERR_AUTH_TOKEN_FILE_INVALID');
    return (err as Error).message;
  }
  throw new Error(`${path} was accepted`);
}

describe('ContainerSecret.load', () => {
  it('generates a 0600 secret without a trailing newline, and matches only it', async () => {
    const path = join(dir, 'generated');
    const { secret, generated } = await ContainerSecret.load(path);
    expect(generated).toBe(true);
    const text = await readFile(path, 'utf8');
    expect(text).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(secret.matches(text)).toBe(true);
    expect(secret.matches(`${text} `)).toBe(false);
    expect(secret.matches(undefined)).toBe(false);
  });

  it('reads an existing secret, trimmed, also through a symlink (Kubernetes projects secrets that way)', async () => {
    const path = join(dir, 'given');
    await writeFile(path, '  a-shared-secret-of-some-length\n', { mode: 0o600 });
    await symlink(path, join(dir, 'link'));
    for (const p of [path, join(dir, 'link')]) {
      const { secret, generated } = await ContainerSecret.load(p);
      expect(generated).toBe(false);
      expect(secret.matches('a-shared-secret-of-some-length')).toBe(true);
    }
  });

  it('refuses a file that others could have written or can read', async () => {
    for (const mode of [0o620, 0o602, 0o640, 0o604]) {
      const path = join(dir, `open-${mode.toString(8)}`);
      await writeFile(path, 'a-secret-of-sufficient-length');
      await chmod(path, mode);
      expect(await loadError(path)).toContain(`open to group or others (mode ${mode.toString(8)})`);
    }
  });

  it('refuses a secret shorter than 16 characters', async () => {
    const path = join(dir, 'short');
    await writeFile(path, 'fifteen-chars-x', { mode: 0o600 });
    expect(await loadError(path)).toMatch(/holds a secret of 15 characters; use at least 16/);
  });

  it('refuses a file owned by another user (when running as root, any non-root owner)', async (ctx) => {
    if (process.getuid?.() !== 0) ctx.skip("changing a file's owner needs root");
    const path = join(dir, 'foreign');
    await writeFile(path, 'planted', { mode: 0o600 });
    await chown(path, 12345, 12345);
    expect(await loadError(path)).toMatch(/belongs to uid 12345/);
  });

  it('refuses an empty file, a multi-line one, and one larger than 4 KiB without reading it all', async () => {
    const empty = join(dir, 'empty');
    await writeFile(empty, '\n', { mode: 0o600 });
    expect(await loadError(empty)).toMatch(/is empty/);
    const lines = join(dir, 'lines');
    await writeFile(lines, 'a\nb', { mode: 0o600 });
    expect(await loadError(lines)).toMatch(/one line of printable ASCII/);
    expect(await loadError('/dev/zero')).toMatch(/not a regular file|larger than 4096 bytes/);
    const big = join(dir, 'big');
    await writeFile(big, 'x'.repeat(5000), { mode: 0o600 });
    expect(await loadError(big)).toMatch(/larger than 4096 bytes/);
  });

  it('never overwrites a file that appears between the check and the write: both racers end with its secret', async () => {
    const path = join(dir, 'race');
    const results = await Promise.all([ContainerSecret.load(path), ContainerSecret.load(path), ContainerSecret.load(path)]);
    const text = await readFile(path, 'utf8');
    for (const r of results) expect(r.secret.matches(text)).toBe(true);
    expect(results.filter((r) => r.generated)).toHaveLength(1);
  });
});
