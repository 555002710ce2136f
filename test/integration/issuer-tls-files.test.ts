import { execFile } from 'node:child_process';
import { chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIssuer } from '../../src/issuer/issuer-server.js';
import { readRegularFileChecked } from '../../src/util/read-regular-file.js';
import { memoryLogger } from '../support/chain.js';
import { baseConfig, configFrom, freePort, makeKey, tempDir } from '../support/issuer-fixtures.js';

/**
 * Issue 11, item 9: the issuer's TLS key file gets the signing keys' ownership and mode check,
 * made with fstat on the descriptor the key is read from.
 */

const run = promisify(execFile);
let dir: string;

beforeAll(async () => {
  dir = await tempDir();
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-keyout',
    join(dir, 'tls.key'),
    '-out',
    join(dir, 'tls.crt'),
  ]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function start(keyMode: number): Promise<unknown> {
  await chmod(join(dir, 'tls.key'), keyMode);
  const key = await makeKey(dir, `k-${keyMode.toString(8)}.pem`);
  const port = await freePort();
  const object = baseConfig('https://127.0.0.1', [{ file: key.file, active: true }], {
    listen: `127.0.0.1:${port}`,
    tls: { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') },
  });
  const { logger } = memoryLogger();
  try {
    const issuer = await startIssuer(configFrom(object, join(dir, 'x.yaml')), { logger, createAttestors: async () => new Map() });
    await issuer.close();
    return undefined;
  } catch (err) {
    return err;
  }
}

describe('the issuer TLS key file', () => {
  it('is refused when open to group or others, and accepted with mode 0600', async () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      const err = (await start(mode)) as { code?: string; message?: string } | undefined;
      expect(err?.code, `mode ${mode.toString(8)}`).toBe('CROSSCRED_ERR_CONFIG_INVALID');
      expect(err?.message).toMatch(/tls: the key file .*tls\.key is open to group or others \(mode 6\d\d\); chmod 600 it/);
      // The message names the file and its mode, never the key's bytes.
      expect(err?.message).not.toMatch(/BEGIN|PRIVATE/);
    }
    expect(await start(0o600)).toBeUndefined();
  });

  it('is checked on the opened descriptor, before anything is read', async () => {
    await chmod(join(dir, 'tls.key'), 0o644);
    let checked = 0;
    await expect(
      readRegularFileChecked(join(dir, 'tls.key'), 1024, (info) => {
        checked++;
        expect(info.isFile()).toBe(true);
        expect(info.mode & 0o777).toBe(0o644);
        throw new Error('refused');
      }),
    ).rejects.toThrow('refused');
    expect(checked).toBe(1);
    await chmod(join(dir, 'tls.key'), 0o600);
    const { bytes, info } = await readRegularFileChecked(join(dir, 'tls.key'), 64 * 1024);
    expect(info.mode & 0o777).toBe(0o600);
    expect(bytes?.toString('utf8')).toContain('PRIVATE KEY');
  });
});
