import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { DEFAULT_AUDIENCE, DEFAULT_SUBJECT, startGlewlwyd, startOauth2MockServer, type ThirdPartyIssuer } from '../support/third-party-issuers.js';

/**
 * The OIDC issuers we did not write (test/support/third-party-issuers.ts) mint RS256 tokens that a
 * verifier finds good the way crosscred's own checks will: discovery document -> jwks_uri -> JWKS,
 * with the discovery `issuer` and the chosen audience.
 * glewlwyd is a Debian package: without it the glewlwyd tests skip, unless CROSSCRED_E2E_STRICT=1
 * (CI), where they fail.
 */
const strict = process.env['CROSSCRED_E2E_STRICT'] === '1';

let mock: ThirdPartyIssuer | undefined;
let glewlwyd: ThirdPartyIssuer | undefined;
let glewlwydUnavailable = '';
let glewlwydError: unknown;

beforeAll(async () => {
  mock = await startOauth2MockServer();
  try {
    const started = await startGlewlwyd();
    if ('unavailable' in started) glewlwydUnavailable = started.unavailable;
    else glewlwyd = started;
  } catch (err) {
    glewlwydError = err; // installed but broken: fail its tests, keep the others
  }
});

afterAll(async () => {
  await mock?.close();
  await glewlwyd?.close();
});

interface Discovery {
  issuer: string;
  jwks_uri: string;
}

async function discover(issuer: ThirdPartyIssuer): Promise<Discovery> {
  const res = await fetch(issuer.discoveryUrl);
  expect(res.status).toBe(200);
  const doc = (await res.json()) as Discovery;
  expect(typeof doc.jwks_uri).toBe('string');
  return doc;
}

/** Verifies the way a relying party would: only from what the discovery document says. */
async function verifyThroughDiscovery(issuer: ThirdPartyIssuer, token: string, audience: string) {
  const doc = await discover(issuer);
  const jwks = createRemoteJWKSet(new URL(doc.jwks_uri));
  return jwtVerify(token, jwks, { issuer: doc.issuer, audience, algorithms: ['RS256'] });
}

function describeIssuer(label: string, get: (ctx: TestContext) => ThirdPartyIssuer) {
  describe(label, () => {
    it('publishes discovery whose issuer is the iss of its tokens, and an http jwks_uri on loopback', async (ctx) => {
      const issuer = get(ctx);
      const doc = await discover(issuer);
      expect(doc.issuer).toBe(issuer.issuer);
      expect(new URL(doc.jwks_uri).protocol).toBe('http:');
      expect(new URL(doc.jwks_uri).hostname).toBe('127.0.0.1');
    });

    it('mints an RS256 token with a kid that verifies through discovery and JWKS for the default audience', async (ctx) => {
      const issuer = get(ctx);
      const token = await issuer.mintToken();
      const header = decodeProtectedHeader(token);
      expect(header.alg).toBe('RS256');
      expect(typeof header.kid).toBe('string');
      const { payload } = await verifyThroughDiscovery(issuer, token, DEFAULT_AUDIENCE);
      expect(payload.iss).toBe(issuer.issuer);
      expect(payload.sub).toBe(DEFAULT_SUBJECT);
      expect(Number.isInteger(payload.exp) && Number.isInteger(payload.iat)).toBe(true);
      expect(payload.exp! - payload.iat!).toBe(3600);
    });

    it('lets the caller choose audience and subject, and a token for one audience fails for another', async (ctx) => {
      const issuer = get(ctx);
      const subject = 'system:serviceaccount:payments:api';
      const token = await issuer.mintToken({ audience: 'sts.aliyuncs.com', subject });
      const { payload } = await verifyThroughDiscovery(issuer, token, 'sts.aliyuncs.com');
      expect(payload.sub).toBe(subject);
      expect(payload.aud).toBe('sts.aliyuncs.com');
      await expect(verifyThroughDiscovery(issuer, token, DEFAULT_AUDIENCE)).rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' });

      // The same subject can get a token for a second audience, and the first one still works.
      const again = await issuer.mintToken({ audience: DEFAULT_AUDIENCE, subject });
      expect((await verifyThroughDiscovery(issuer, again, DEFAULT_AUDIENCE)).payload.sub).toBe(subject);
      const third = await issuer.mintToken({ audience: 'sts.aliyuncs.com', subject });
      expect((await verifyThroughDiscovery(issuer, third, 'sts.aliyuncs.com')).payload.sub).toBe(subject);
    });

    it('signs with the key of its own JWKS only: a token from the other issuer does not verify', async (ctx) => {
      const issuer = get(ctx);
      const other = issuer === mock ? glewlwyd : mock;
      if (!other) ctx.skip('the other issuer is not running');
      const foreign = await other!.mintToken();
      const doc = await discover(issuer);
      await expect(jwtVerify(foreign, createRemoteJWKSet(new URL(doc.jwks_uri)), { algorithms: ['RS256'] })).rejects.toMatchObject({
        code: 'ERR_JWKS_NO_MATCHING_KEY',
      });
    });
  });
}

describeIssuer('oauth2-mock-server (npm)', () => {
  if (!mock) throw new Error('oauth2-mock-server did not start');
  return mock;
});

/** glewlwyd, or the test skips (fails under CROSSCRED_E2E_STRICT=1) with the reason it is not running. */
function requireGlewlwyd(ctx: TestContext): ThirdPartyIssuer {
  if (glewlwydError) throw glewlwydError;
  if (!glewlwyd) {
    if (strict) throw new Error(`${glewlwydUnavailable}, and CROSSCRED_E2E_STRICT=1 requires it`);
    ctx.skip(glewlwydUnavailable);
  }
  return glewlwyd!;
}

describeIssuer('glewlwyd (Debian)', requireGlewlwyd);
