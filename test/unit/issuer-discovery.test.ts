import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderDiscovery, writeDiscovery } from '../../src/issuer/discovery.js';
import { type IssuerKeySet, loadKeySet } from '../../src/issuer/keys.js';
import { mintToken } from '../../src/issuer/token-minter.js';
import { makeKey, tempDir } from '../support/issuer-fixtures.js';

let dir: string;
let keys: IssuerKeySet;
beforeAll(async () => {
  dir = await tempDir();
  const a = await makeKey(dir, 'a.pem', 'ES256');
  const b = await makeKey(dir, 'b.pem', 'RS256');
  keys = await loadKeySet([
    { file: a.file, active: true },
    { file: b.file, active: false },
  ]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('issuer discovery', () => {
  it('renders the discovery document and a JWKS of public members only', () => {
    const docs = renderDiscovery({ issuerUrl: 'https://issuer.example.com/t1', tokenEndpointUrl: 'https://token.internal/token', keys });
    const doc = JSON.parse(docs.openidConfiguration.toString('utf8')) as Record<string, unknown>;
    expect(doc).toMatchObject({
      issuer: 'https://issuer.example.com/t1',
      jwks_uri: 'https://issuer.example.com/t1/.well-known/jwks.json',
      token_endpoint: 'https://token.internal/token',
      authorization_endpoint: 'urn:crosscred:programmatic_authorization',
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256', 'RS256'],
      grant_types_supported: ['urn:ietf:params:oauth:grant-type:token-exchange'],
    });
    const jwks = JSON.parse(docs.jwks.toString('utf8')) as JSONWebKeySet;
    expect(jwks.keys.map((k) => [k.kty, k.alg, k.use, k.kid])).toEqual(keys.published.map((k) => [k.publicJwk.kty, k.alg, 'sig', k.kid]));
    for (const k of jwks.keys) for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(k).not.toHaveProperty(secret);
    // Deterministic: the same key set renders the same bytes.
    expect(renderDiscovery({ issuerUrl: 'https://issuer.example.com/t1', tokenEndpointUrl: 'https://token.internal/token', keys }).jwks.equals(docs.jwks)).toBe(
      true,
    );
  });

  it('writes both files under .well-known, byte for byte', async () => {
    const docs = renderDiscovery({ issuerUrl: 'https://issuer.example.com', tokenEndpointUrl: 'https://issuer.example.com/token', keys });
    const out = join(dir, 'out');
    await writeDiscovery(out, docs);
    await writeDiscovery(out, docs); // replacing is fine
    expect((await readFile(join(out, '.well-known/openid-configuration'))).equals(docs.openidConfiguration)).toBe(true);
    expect((await readFile(join(out, '.well-known/jwks.json'))).equals(docs.jwks)).toBe(true);
  });

  it('mints tokens the JWKS verifies, with the active key', async () => {
    const docs = renderDiscovery({ issuerUrl: 'https://issuer.example.com', tokenEndpointUrl: 'https://issuer.example.com/token', keys });
    const now = Date.UTC(2026, 10, 30, 12);
    const minted = await mintToken(
      'https://issuer.example.com',
      keys,
      {
        subject: 'alibaba-ecs:1:cn-hangzhou:i-1',
        audience: 'sts.amazonaws.com',
        lifetimeSeconds: 900,
        identity: {
          kind: 'urn:crosscred:params:token-type:alibaba-ecs-identity',
          cloud: 'alibaba',
          accountId: '1',
          attributes: { ['x'.repeat(65)]: 'dropped', ok: 'v'.repeat(300) },
          replayKey: 'k',
          replayUntilWall: now + 1,
        },
      },
      now,
    );
    const { payload, protectedHeader } = await jwtVerify(minted.jwt, createLocalJWKSet(JSON.parse(docs.jwks.toString('utf8')) as JSONWebKeySet), {
      issuer: 'https://issuer.example.com',
      audience: 'sts.amazonaws.com',
      currentDate: new Date(now),
    });
    expect(protectedHeader.kid).toBe(keys.active.kid);
    expect(payload.exp! - payload.iat!).toBe(900);
    expect(payload.iat).toBe(now / 1000);
    expect((payload['https://crosscred.dev/claims'] as { attributes: Record<string, string> }).attributes).toEqual({ ok: 'v'.repeat(256) });
  });
});
