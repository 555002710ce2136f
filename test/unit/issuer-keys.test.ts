import { generateKeyPairSync } from 'node:crypto';
import { chmod, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, importPKCS8, type JWK, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCrosscredError } from '../../src/core/errors.js';
import { generateKeyFile, loadKeyFile, loadKeySet } from '../../src/issuer/keys.js';
import { tempDir } from '../support/issuer-fixtures.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeKey(name: string, text: string, mode = 0o600): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text, { mode });
  await chmod(path, mode);
  return path;
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect(isCrosscredError(err, 'ISSUER_KEY_INVALID') || isCrosscredError(err, 'ISSUER_KEY_FILE_EXISTS')).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('issuer keys', () => {
  it('keygen writes PKCS#8 with mode 0600, refuses to overwrite, and the kid is the RFC 7638 thumbprint', async () => {
    const path = join(dir, 'gen-es.pem');
    const { kid, publicJwk } = await generateKeyFile('ES256', path);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(publicJwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid });
    expect(kid).toBe(await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: publicJwk.x!, y: publicJwk.y! }));
    expect(await refusal(generateKeyFile('ES256', path))).toContain('already exists');
    const rsa = await generateKeyFile('RS256', join(dir, 'gen-rs.pem'), 2048);
    expect(rsa.publicJwk).toMatchObject({ kty: 'RSA', alg: 'RS256', e: 'AQAB' });
    expect(Object.keys(rsa.publicJwk).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
  });

  it('loads PKCS#8 PEM, private JWK and public-only files; signs with the active key', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const jwk = privateKey.export({ format: 'jwk' }) as JWK;
    const jwkPath = await writeKey('ec.jwk', JSON.stringify({ ...jwk, alg: 'ES256', use: 'sig' }));
    const pemPath = join(dir, 'gen-es.pem');
    const publicOnly = await writeKey(
      'pub.pem',
      generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'pem', type: 'spki' }) as string,
      0o644,
    );
    const set = await loadKeySet([
      { file: pemPath, active: false },
      { file: jwkPath, active: true },
      { file: publicOnly, active: false },
    ]);
    expect(set.published.map((k) => k.alg)).toEqual(['ES256', 'ES256', 'RS256']);
    expect(set.active.file).toBe(jwkPath);
    expect(set.published[2]!.privateKey).toBeUndefined();
    for (const k of set.published) expect(k.publicJwk).not.toHaveProperty('d');
    // The loaded key signs what its published JWK verifies.
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: set.active.kid }).setSubject('s').sign(set.active.privateKey);
    await jwtVerify(token, set.active.publicJwk);
    // And a PKCS#8 key loaded by jose itself gives the same public JWK.
    const viaJose = await exportJWK(await importPKCS8((await import('node:fs')).readFileSync(pemPath, 'utf8'), 'ES256', { extractable: true }));
    expect(set.published[0]!.publicJwk.x).toBe(viaJose.x);
  });

  it('refuses a private key file open to group or others', async () => {
    const pem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    for (const mode of [0o640, 0o604, 0o660]) {
      const path = await writeKey(`open-${mode.toString(8)}.pem`, pem, mode);
      expect(await refusal(loadKeyFile(path, { requirePrivate: false }))).toContain('chmod 600');
    }
  });

  it('refuses weak RSA, other curves and algorithms, legacy and encrypted PEM, mismatched JWK alg', async () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    expect(await refusal(loadKeyFile(await writeKey('weak.pem', weak), { requirePrivate: true }))).toContain('1024-bit');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    expect(await refusal(loadKeyFile(await writeKey('p384.pem', p384), { requirePrivate: true }))).toContain('P-256');
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    expect(await refusal(loadKeyFile(await writeKey('ed.pem', ed), { requirePrivate: true }))).toContain('ed25519');
    const sec1 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'pem', type: 'sec1' }) as string;
    expect(await refusal(loadKeyFile(await writeKey('sec1.pem', sec1), { requirePrivate: true }))).toContain('openssl pkcs8');
    const encrypted = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
      format: 'pem',
      type: 'pkcs8',
      cipher: 'aes-256-cbc',
      passphrase: 'x',
    }) as string;
    expect(await refusal(loadKeyFile(await writeKey('enc.pem', encrypted), { requirePrivate: true }))).toContain('encrypted');
    const jwk = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'jwk' });
    expect(await refusal(loadKeyFile(await writeKey('alg.jwk', JSON.stringify({ ...jwk, alg: 'ES384' })), { requirePrivate: true }))).toContain('ES384');
    const hmac = await writeKey('oct.jwk', JSON.stringify({ kty: 'oct', k: 'c2VjcmV0' }));
    await refusal(loadKeyFile(hmac, { requirePrivate: true }));
    expect(await refusal(loadKeyFile(await writeKey('junk.pem', 'hello'), { requirePrivate: true }))).toContain('no PEM block');
  });

  it('checks the set: exactly one active, the active one private, no key twice', async () => {
    const a = join(dir, 'gen-es.pem');
    const pub = join(dir, 'pub.pem');
    expect(await refusal(loadKeySet([{ file: a, active: false }]))).toContain('exactly one key must be active');
    expect(
      await refusal(
        loadKeySet([
          { file: a, active: true },
          { file: join(dir, 'gen-rs.pem'), active: true },
        ]),
      ),
    ).toContain('2 are');
    expect(await refusal(loadKeySet([{ file: pub, active: true }]))).toContain('public key only');
    const copy = await writeKey('copy.pem', (await import('node:fs')).readFileSync(a, 'utf8'));
    expect(
      await refusal(
        loadKeySet([
          { file: a, active: true },
          { file: copy, active: false },
        ]),
      ),
    ).toContain('same key');
    // All problems in one message.
    const message = await refusal(
      loadKeySet([
        { file: join(dir, 'missing.pem'), active: false },
        { file: pub, active: false },
      ]),
    );
    expect(message).toContain('missing.pem');
    expect(message).toContain('exactly one key must be active');
  });
});
