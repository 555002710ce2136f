import { chmod, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HTTP_LIMITS } from '../../src/http/limits.js';
import { startIssuer } from '../../src/issuer/issuer-server.js';
import { readRegularFileChecked } from '../../src/util/read-regular-file.js';
import { memoryLogger } from '../support/chain.js';
import { baseConfig, configFrom, freePort, makeKey, tempDir } from '../support/issuer-fixtures.js';
import { selfSignedCert } from '../support/self-signed.js';

/**
 * Issue 11, item 9: the issuer's TLS key file gets the signing keys' ownership and mode check,
 * made with fstat on the descriptor the key is read from. Item 3: the issuer's HTTPS listener
 * caps connections per client address.
 */

let dir: string;

beforeAll(async () => {
  dir = await tempDir();
  await selfSignedCert({ cn: 'localhost', keyFile: join(dir, 'tls.key'), certFile: join(dir, 'tls.crt'), ips: ['127.0.0.1'] });
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

/** A TLS connection from `localAddress`: resolves true once the handshake is done, false if the server closed it first. */
function tlsClient(port: number, localAddress: string, ca: Buffer): Promise<{ socket: TLSSocket; admitted: boolean }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ socket: connect({ host: '127.0.0.1', port, localAddress }), host: '127.0.0.1', ca, servername: '' });
    socket.once('secureConnect', () => resolve({ socket, admitted: true }));
    socket.once('error', () => resolve({ socket, admitted: false }));
    socket.once('close', () => resolve({ socket, admitted: false }));
  });
}

describe('the issuer HTTPS listener', () => {
  it(`holds at most ${HTTP_LIMITS.maxConnectionsPerAddress} connections from one address; another address still gets in`, async () => {
    await chmod(join(dir, 'tls.key'), 0o600);
    const key = await makeKey(dir, 'k-cap.pem');
    const port = await freePort();
    const object = baseConfig('https://127.0.0.1', [{ file: key.file, active: true }], {
      listen: `127.0.0.1:${port}`,
      tls: { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') },
    });
    const { logger } = memoryLogger();
    const issuer = await startIssuer(configFrom(object, join(dir, 'x.yaml')), { logger, createAttestors: async () => new Map() });
    const ca = await readFile(join(dir, 'tls.crt'));
    const held: TLSSocket[] = [];
    try {
      // Completed handshakes, so that the 5 s handshake timeout does not close them meanwhile;
      // opened in batches of 32 to be done in a few seconds even on a busy machine.
      for (let i = 0; i < HTTP_LIMITS.maxConnectionsPerAddress; i += 32) {
        const batch = await Promise.all(Array.from({ length: 32 }, () => tlsClient(port, '127.0.0.1', ca)));
        held.push(...batch.map((c) => c.socket));
        expect(batch.every((c) => c.admitted)).toBe(true);
      }
      const extra = await tlsClient(port, '127.0.0.1', ca);
      extra.socket.destroy();
      expect(extra.admitted).toBe(false);
      // Operators see the refusals on /metrics (a client behind one NAT address can meet the cap too).
      const metrics = await (await fetch(`http://127.0.0.1:${issuer.admin!.port}/metrics`)).text();
      expect(metrics).toMatch(/^crosscred_issuer_connections_refused_per_address_total 1$/m);
      const other = await tlsClient(port, '127.0.0.2', ca);
      other.socket.destroy();
      expect(other.admitted).toBe(true);
    } finally {
      for (const socket of held) socket.destroy();
      await issuer.close();
    }
  });
});
