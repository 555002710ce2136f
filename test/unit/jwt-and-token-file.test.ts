import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { CompactSign, type CryptoKey, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrosscredError } from '../../src/core/errors.js';
import { FileTokenSource } from '../../src/sources/file-token-source.js';
import { inspectJwt, STS_MAX_TOKEN_LENGTH } from '../../src/sources/jwt-shape.js';
import { FakeClock } from '../support/fake-clock.js';

const SOURCE = 'token file /test/token';

let privateKey: CryptoKey;
let dir: string;
const clock = new FakeClock();
const nowSeconds = Math.floor(clock.wallNow() / 1000);

beforeAll(async () => {
  ({ privateKey } = await generateKeyPair('ES256'));
  dir = await mkdtemp(join(tmpdir(), 'crosscred-token-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A real ES256 JWT, valid for an hour at the fake clock's time unless `exp` says otherwise. */
function signToken(options: { exp?: number; sub?: string } = {}): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: 'key-1' })
    .setIssuer('https://oidc.example.com')
    .setSubject(options.sub ?? 'system:serviceaccount:default:app')
    .setAudience('sts.amazonaws.com')
    .setExpirationTime(options.exp ?? nowSeconds + 3600)
    .sign(privateKey);
}

/** A real ES256 JWS over an arbitrary payload, for claims SignJWT would refuse to write. */
function signPayload(payload: unknown, header: Record<string, unknown> = { alg: 'ES256' }): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header as { alg: string }).sign(privateKey);
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** Runs `fn`, expecting a CrosscredError, and returns it. */
function caught(fn: () => unknown): CrosscredError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CrosscredError);
    return err as CrosscredError;
  }
  throw new Error('expected a CrosscredError, but nothing was thrown');
}

async function caughtAsync(promise: Promise<unknown>): Promise<CrosscredError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CrosscredError);
    return err as CrosscredError;
  }
  throw new Error('expected a CrosscredError, but nothing was thrown');
}

/** The error must not leak the token or any of its parts. */
function expectNoTokenText(err: CrosscredError, token: string): void {
  const texts = [err.message, err.describe(), String(err.stack)];
  const parts = token.split('.').filter((p) => p.length >= 8);
  for (const text of texts) {
    if (token.length >= 8) expect(text).not.toContain(token);
    for (const part of parts) expect(text).not.toContain(part);
  }
}

let fileCounter = 0;
async function tokenFile(contents: string | Buffer): Promise<string> {
  const path = join(dir, `token-${fileCounter++}`);
  await writeFile(path, contents);
  return path;
}

describe('inspectJwt', () => {
  it('accepts a real ES256 JWT and returns only its non-secret claims', async () => {
    const token = await signToken();
    expect(inspectJwt(token, clock.wallNow(), SOURCE)).toEqual({
      exp: nowSeconds + 3600,
      iss: 'https://oidc.example.com',
      sub: 'system:serviceaccount:default:app',
      aud: 'sts.amazonaws.com',
      kid: 'key-1',
      alg: 'ES256',
    });
  });

  it('refuses an empty token', () => {
    const err = caught(() => inspectJwt('', clock.wallNow(), SOURCE));
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
    expect(err.message).toContain(SOURCE);
  });

  it('refuses a token truncated anywhere before its signature', async () => {
    const token = await signToken();
    const [header, payload] = token.split('.') as [string, string, string];
    const cuts = [
      5,
      header.length - 1,
      header.length, // "header"
      header.length + 1, // "header."
      header.length + 1 + Math.floor(payload.length / 2),
      header.length + payload.length, // one character short of the payload
      header.length + 1 + payload.length, // "header.payload"
      header.length + 2 + payload.length, // "header.payload."
    ];
    for (const cut of cuts) {
      const truncated = token.slice(0, cut);
      const err = caught(() => inspectJwt(truncated, clock.wallNow(), SOURCE));
      expect(err.code, `cut at ${cut}`).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
      expectNoTokenText(err, truncated);
    }
  });

  // A read mid-write most often loses the tail, i.e. the signature; ES256 signatures are exactly
  // 64 bytes (RFC 7518 §3.4), so such a cut is caught before the token reaches STS.
  it('refuses a token truncated inside its signature', async () => {
    const token = await signToken();
    const signatureStart = token.lastIndexOf('.') + 1;
    for (const cut of [signatureStart + 1, signatureStart + 40, token.length - 1]) {
      const err = caught(() => inspectJwt(token.slice(0, cut), clock.wallNow(), SOURCE));
      expect(err.code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
    }
  });

  it('refuses an unsecured JWT (alg none), whether or not it carries a signature part', async () => {
    const unsecured = new UnsecuredJWT({ sub: 'x' }).setExpirationTime(nowSeconds + 3600).encode();
    expect(caught(() => inspectJwt(unsecured, clock.wallNow(), SOURCE)).code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');

    const forged = `${b64({ alg: 'none' })}.${b64({ exp: nowSeconds + 3600 })}.c2lnbmF0dXJl`;
    const err = caught(() => inspectJwt(forged, clock.wallNow(), SOURCE));
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
    expect(err.message).toContain('"none"');
    expectNoTokenText(err, forged);
  });

  it('refuses an HMAC-signed JWT, which STS does not accept', async () => {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(nowSeconds + 3600)
      .sign(new Uint8Array(32).fill(1));
    expect(caught(() => inspectJwt(token, clock.wallNow(), SOURCE)).code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
  });

  it('refuses a JWT without an exp claim', async () => {
    const token = await signPayload({ sub: 'app', iss: 'https://oidc.example.com' });
    const err = caught(() => inspectJwt(token, clock.wallNow(), SOURCE));
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
    expect(err.message).toContain('"exp"');
    expectNoTokenText(err, token);
  });

  it('refuses exp values that are not positive integers', async () => {
    for (const exp of [nowSeconds + 3600.5, String(nowSeconds + 3600), 0, -5, null, [nowSeconds + 3600]]) {
      const token = await signPayload({ exp });
      expect(caught(() => inspectJwt(token, clock.wallNow(), SOURCE)).code, `exp ${JSON.stringify(exp)}`).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
    }
  });

  it('refuses an expired token with TOKEN_EXPIRED and says how long ago', async () => {
    const token = await signToken({ exp: nowSeconds - 90 });
    const err = caught(() => inspectJwt(token, clock.wallNow(), SOURCE));
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_EXPIRED');
    expect(err.message).toContain('90 s ago');
    expectNoTokenText(err, token);
  });

  it('treats a token as expired at exactly its exp second, and valid one second before', async () => {
    const token = await signToken({ exp: nowSeconds + 10 });
    expect(inspectJwt(token, (nowSeconds + 10) * 1000 - 1, SOURCE).exp).toBe(nowSeconds + 10);
    expect(caught(() => inspectJwt(token, (nowSeconds + 10) * 1000, SOURCE)).code).toBe('CROSSCRED_ERR_TOKEN_EXPIRED');
  });

  it('refuses a token longer than STS accepts with TOKEN_TOO_LARGE', () => {
    const huge = `${b64({ alg: 'ES256' })}.${'A'.repeat(STS_MAX_TOKEN_LENGTH)}.sig`;
    const err = caught(() => inspectJwt(huge, clock.wallNow(), SOURCE));
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_TOO_LARGE');
    expect(err.message.length).toBeLessThan(300);
  });

  it('refuses JSON that is not an object in the header or payload', () => {
    for (const [header, payload] of [
      [[1], { exp: nowSeconds + 60 }],
      [{ alg: 'ES256' }, 'text'],
      [{ alg: 'ES256' }, null],
    ] as const) {
      const token = `${b64(header)}.${b64(payload)}.c2ln`;
      expect(caught(() => inspectJwt(token, clock.wallNow(), SOURCE)).code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
    }
  });

  it('never throws anything but a CrosscredError for arbitrary strings', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^[A-Za-z0-9_.-]{0,200}$/)), (s) => {
        try {
          inspectJwt(s, clock.wallNow(), SOURCE);
        } catch (err) {
          expect(err).toBeInstanceOf(CrosscredError);
          if (s.length >= 8) expect((err as Error).message).not.toContain(s);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('never throws anything but a CrosscredError for well-formed JWS with arbitrary JSON claims', () => {
    const primitive = fc.oneof(fc.jsonValue(), fc.string(), fc.double(), fc.constantFrom('ES256', 'RS512', 'none', 'HS256'));
    fc.assert(
      fc.property(primitive, fc.jsonValue(), fc.jsonValue(), (alg, exp, extra) => {
        const token = `${b64({ alg, kid: extra })}.${b64({ exp, aud: extra, sub: extra })}.c2lnbmF0dXJl`;
        try {
          inspectJwt(token, clock.wallNow(), SOURCE);
        } catch (err) {
          expect(err).toBeInstanceOf(CrosscredError);
        }
      }),
      { numRuns: 1_000 },
    );
  });

  // Regression: the message once formatted alg with String(alg), which throws for {"toString":1}.
  it('refuses a header whose alg is an object with a non-callable toString as TOKEN_NOT_JWT', () => {
    const token = `${b64({ alg: { toString: 1 } })}.${b64({ exp: nowSeconds + 60 })}.c2lnbmF0dXJl`;
    expect(caught(() => inspectJwt(token, clock.wallNow(), SOURCE)).code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
  });
});

describe('FileTokenSource', () => {
  it('reads a valid token and trims surrounding whitespace and newlines', async () => {
    const token = await signToken();
    const source = new FileTokenSource(await tokenFile(`\n  ${token}\r\n\n`), clock);
    const result = await source.getToken();
    expect(result.token).toBe(token);
    expect(result.expiresAtWall).toBe((nowSeconds + 3600) * 1000);
    expect(result.claims.sub).toBe('system:serviceaccount:default:app');
  });

  it('refuses an empty file as TOKEN_NOT_JWT', async () => {
    const source = new FileTokenSource(await tokenFile(''), clock);
    expect((await caughtAsync(source.getToken())).code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
  });

  it('refuses a whitespace-only file as TOKEN_NOT_JWT', async () => {
    const source = new FileTokenSource(await tokenFile('  \n\n'), clock);
    expect((await caughtAsync(source.getToken())).code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
  });

  it('refuses a truncated token without echoing it', async () => {
    const token = await signToken();
    const truncated = token.slice(0, token.indexOf('.') + 20);
    const path = await tokenFile(truncated);
    const err = await caughtAsync(new FileTokenSource(path, clock).getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
    expect(err.message).toContain(path);
    expectNoTokenText(err, truncated);
  });

  it('refuses an expired token as TOKEN_EXPIRED, judged by the injected clock', async () => {
    const token = await signToken({ exp: nowSeconds + 60 });
    const later = new FakeClock(clock.wallNow() + 61_000);
    const path = await tokenFile(token);
    await expect(new FileTokenSource(path, clock).getToken()).resolves.toMatchObject({ token });
    const err = await caughtAsync(new FileTokenSource(path, later).getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_EXPIRED');
    expectNoTokenText(err, token);
  });

  it('reports a missing file as TOKEN_FILE_UNREADABLE with the path and errno code', async () => {
    const path = join(dir, 'does-not-exist');
    const err = await caughtAsync(new FileTokenSource(path, clock).getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_FILE_UNREADABLE');
    expect(err.message).toContain(path);
    expect(err.message).toContain('ENOENT');
  });

  it('reports a directory as TOKEN_FILE_UNREADABLE', async () => {
    const path = join(dir, 'a-directory');
    await mkdir(path);
    expect((await caughtAsync(new FileTokenSource(path, clock).getToken())).code).toBe('CROSSCRED_ERR_TOKEN_FILE_UNREADABLE');
  });

  it('refuses 1 MB of garbage as TOKEN_TOO_LARGE without echoing it', async () => {
    const garbage = Buffer.alloc(1024 * 1024, 'x');
    const err = await caughtAsync(new FileTokenSource(await tokenFile(garbage), clock).getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_TOO_LARGE');
    expect(err.message).not.toContain('xxxxxxxx');
  });

  it('refuses a file just over the STS token limit as TOKEN_TOO_LARGE', async () => {
    const oversized = `${b64({ alg: 'ES256' })}.${'A'.repeat(STS_MAX_TOKEN_LENGTH)}.c2ln`;
    expect((await caughtAsync(new FileTokenSource(await tokenFile(oversized), clock).getToken())).code).toBe('CROSSCRED_ERR_TOKEN_TOO_LARGE');
  });

  it('reads the file fresh on every call, so a rotated token is picked up', async () => {
    const first = await signToken({ sub: 'first' });
    const second = await signToken({ sub: 'second' });
    const path = await tokenFile(first);
    const source = new FileTokenSource(path, clock);
    expect((await source.getToken()).token).toBe(first);
    await writeFile(path, second);
    const result = await source.getToken();
    expect(result.token).toBe(second);
    expect(result.claims.sub).toBe('second');
  });

  it('names the file in its description', () => {
    expect(new FileTokenSource('/var/run/secrets/token', clock).description).toBe('token file /var/run/secrets/token');
  });
});
