import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseTc3Authorization, signTc3, Tc3FormatError, tc3CanonicalRequest, tc3StringToSign } from '../../src/platform/tencent/tc3-signature.js';

/**
 * The TC3 signer is checked against code we did not write: the official Node SDK's `Sign.sign3`
 * (identical output on random inputs when only content-type;host are signed, the only case the SDK
 * can produce), and the published worked example of Tencent's "Signature v3" page (for the
 * canonical form of an extra signed header). That a signature with extra headers is accepted by a
 * verifier is shown in test/integration/tencent-attestation.test.ts, against the fake STS.
 */

// The SDK is CommonJS (`exports.default = Sign`); required as such, the same under Node and vitest.
const Sign = (
  createRequire(import.meta.url)(
    'tencentcloud-sdk-nodejs-common/tencentcloud/common/sign.js',
  ) as typeof import('tencentcloud-sdk-nodejs-common/tencentcloud/common/sign.js')
).default;

/** Content types the SDK sends, and lower-case others (TC3 lower-cases values; the SDK never sends upper case). */
const contentType = fc.oneof(
  fc.constantFrom('application/json', 'application/json; charset=utf-8', 'application/x-www-form-urlencoded', 'application/octet-stream; charset=utf-8'),
  fc.stringMatching(/^[a-z][a-z0-9/;=.+-]{0,40}$/),
);
const host = fc.domain();
const path = fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`));
const query = fc.option(fc.webQueryParameters(), { nil: undefined });
const timestamp = fc.integer({ min: 0, max: 4_102_444_800 }); // 1970 to 2100
const service = fc.stringMatching(/^[a-z][a-z0-9]{0,15}$/);
const secretId = fc.stringMatching(/^AKID[A-Za-z0-9]{4,40}$/);
const secretKey = fc.string({ unit: 'binary', minLength: 1, maxLength: 64 });

describe("signTc3 with only content-type;host signed equals the SDK's Sign.sign3", () => {
  it('for random URLs, bodies, keys, services and timestamps (body given to sign3 as bytes)', () => {
    fc.assert(
      fc.property(
        fc.record({
          method: fc.constantFrom('POST', 'GET'),
          host,
          path,
          query,
          body: fc.string({ unit: 'binary', maxLength: 300 }),
          contentType,
          timestamp,
          service,
          secretId,
          secretKey,
        }),
        (c) => {
          const url = `https://${c.host}${c.path}${c.query === undefined ? '' : `?${c.query}`}`;
          const official = Sign.sign3({
            method: c.method,
            url,
            payload: Buffer.from(c.body, 'utf8'),
            timestamp: c.timestamp,
            service: c.service,
            secretId: c.secretId,
            secretKey: c.secretKey,
            multipart: false,
            boundary: '',
            headers: { 'Content-Type': c.contentType },
          });
          const ours = signTc3(
            { method: c.method, url, headers: { 'content-type': c.contentType, host: new URL(url).hostname }, body: c.body },
            { secretId: c.secretId, secretKey: c.secretKey },
            { service: c.service, timestamp: c.timestamp, signedHeaders: [] },
          );
          expect(ours).toBe(official);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('for JSON parameter objects, as the SDK itself calls it (payload serialized by the SDK)', () => {
    // Printable-ASCII strings: there JSON.stringify and the SDK's json-bigint write the same bytes.
    const ascii = fc.string({ unit: 'binary-ascii', maxLength: 20 }).map((s) => s.replace(/[^\x20-\x7e]/g, ''));
    const params = fc.dictionary(ascii, fc.oneof(ascii, fc.integer(), fc.boolean(), fc.array(ascii, { maxLength: 3 })), { maxKeys: 5 });
    fc.assert(
      fc.property(fc.record({ host, params, contentType: fc.constant('application/json'), timestamp, secretId, secretKey }), (c) => {
        const url = `https://${c.host}/`;
        const official = Sign.sign3({
          method: 'POST',
          url,
          payload: c.params,
          timestamp: c.timestamp,
          service: 'sts',
          secretId: c.secretId,
          secretKey: c.secretKey,
          multipart: false,
          boundary: '',
          headers: { 'Content-Type': c.contentType },
        });
        const ours = signTc3(
          { method: 'POST', url, headers: { 'content-type': c.contentType, host: c.host }, body: JSON.stringify(c.params) },
          { secretId: c.secretId, secretKey: c.secretKey },
          { service: 'sts', timestamp: c.timestamp, signedHeaders: ['content-type', 'host'] },
        );
        expect(ours).toBe(official);
      }),
      { numRuns: 300 },
    );
  });

  it('for the empty GetCallerIdentity call the tencent-cvm source makes', () => {
    const url = 'https://sts.tencentcloudapi.com/';
    const official = Sign.sign3({
      method: 'POST',
      url,
      payload: {},
      timestamp: 1_764_504_000,
      service: 'sts',
      secretId: 'AKIDexample',
      secretKey: 'key',
      multipart: false,
      boundary: '',
      headers: { 'Content-Type': 'application/json' },
    });
    const ours = signTc3(
      { method: 'POST', url, headers: { 'content-type': 'application/json', host: 'sts.tencentcloudapi.com' }, body: '{}' },
      { secretId: 'AKIDexample', secretKey: 'key' },
      { service: 'sts', timestamp: 1_764_504_000, signedHeaders: [] },
    );
    expect(ours).toBe(official);
  });
});

describe("Tencent's published worked example (Signature v3 page, DescribeInstances, 2019-02-25)", () => {
  // The payload is the documented bytes, with \u escapes written out literally.
  const payload = '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}';
  const headers = { 'content-type': 'application/json; charset=utf-8', host: 'cvm.tencentcloudapi.com', 'x-tc-action': 'DescribeInstances' };
  const request = { method: 'POST', url: 'https://cvm.tencentcloudapi.com/', headers, body: payload };
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

  it('content-type;host: the documented canonical-request hash and signature', () => {
    const canonical = tc3CanonicalRequest(request, ['content-type', 'host']);
    expect(sha256(canonical)).toBe('5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031');
    // The page signs with its masked key, literally.
    const auth = signTc3(
      request,
      { secretId: 'AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE', secretKey: 'Gu5t9xGARNpq86cd98joQYCN3*******' },
      { service: 'cvm', timestamp: 1_551_113_065, signedHeaders: [] },
    );
    expect(auth).toBe(
      'TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c',
    );
  });

  it('content-type;host;x-tc-action: the documented canonical request, with the action value lower-cased', () => {
    const canonical = tc3CanonicalRequest(request, ['content-type', 'host', 'x-tc-action']);
    expect(canonical).toContain('\nx-tc-action:describeinstances\n\ncontent-type;host;x-tc-action\n');
    expect(sha256(canonical)).toBe('7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84');
    expect(tc3StringToSign(1_551_113_065, '2019-02-25/cvm/tc3_request', canonical)).toBe(
      'TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84',
    );
  });
});

describe('extra signed headers', () => {
  const key = { secretId: 'AKIDtest0001', secretKey: 'secret' };
  const base = {
    'content-type': 'application/json',
    host: 'sts.tencentcloudapi.com',
    'x-crosscred-audience': 'https://issuer.example.com',
    'x-tc-action': 'GetCallerIdentity',
    'x-tc-timestamp': '1764504000',
    'x-tc-token': 'token-not-signed',
  };
  const sign = (headers: Record<string, string>) =>
    signTc3({ method: 'POST', url: 'https://sts.tencentcloudapi.com/', headers, body: '{}' }, key, {
      service: 'sts',
      timestamp: 1_764_504_000,
      signedHeaders: ['x-tc-timestamp', 'x-tc-action', 'x-crosscred-audience'],
    });

  it('lists them sorted with the mandatory two, and a change to any of them changes the signature', () => {
    const auth = sign(base);
    expect(parseTc3Authorization(auth).signedHeaders).toEqual(['content-type', 'host', 'x-crosscred-audience', 'x-tc-action', 'x-tc-timestamp']);
    const signature = parseTc3Authorization(auth).signature;
    for (const [name, value] of [
      ['x-crosscred-audience', 'https://evil.example.com'],
      ['x-tc-action', 'AssumeRole'],
      ['host', 'sts.ap-guangzhou.tencentcloudapi.com'],
      ['x-tc-timestamp', '1764504001'],
    ]) {
      expect(parseTc3Authorization(sign({ ...base, [name!]: value! })).signature, name).not.toBe(signature);
    }
    // An unsigned header does not take part.
    expect(parseTc3Authorization(sign({ ...base, 'x-tc-token': 'other' })).signature).toBe(signature);
  });

  it('signs values lower-cased and trimmed, as the TC3 documentation specifies (so case is not bound)', () => {
    const signature = parseTc3Authorization(sign(base)).signature;
    expect(parseTc3Authorization(sign({ ...base, 'x-tc-action': ' getcalleridentity ' })).signature).toBe(signature);
  });

  it('refuses what it cannot sign unambiguously, without echoing the secret', () => {
    expect(() => sign({ ...base, 'x-crosscred-audience': 'https://issuer.example.com/\u00e9' })).toThrow(Tc3FormatError);
    expect(() => sign({ ...base, 'x-crosscred-audience': 'a\r\nx-injected: 1' })).toThrow(/other than printable ASCII/);
    const { 'x-tc-action': _, ...withoutAction } = base;
    expect(() => sign(withoutAction)).toThrow(/x-tc-action is not in the request/);
    expect(() =>
      signTc3(
        { method: 'POST', url: 'https://h/', headers: base, body: '' },
        { secretId: 'AKID/evil', secretKey: 'topsecret' },
        { service: 'sts', timestamp: 1, signedHeaders: [] },
      ),
    ).toThrow(/SecretId/);
    try {
      signTc3(
        { method: 'POST', url: 'https://h/', headers: base, body: '' },
        { secretId: 'AKID/evil', secretKey: 'topsecret' },
        { service: 'sts', timestamp: 1, signedHeaders: [] },
      );
    } catch (err) {
      expect(String(err)).not.toContain('topsecret');
      expect(String(err)).not.toContain('AKID/evil');
    }
  });
});

describe('parseTc3Authorization', () => {
  it('round-trips what signTc3 writes, for random header sets', () => {
    const name = fc.stringMatching(/^x-[a-z0-9-]{1,20}$/);
    fc.assert(
      fc.property(fc.uniqueArray(name, { maxLength: 6 }), secretId, service, timestamp, (extra, id, svc, ts) => {
        const headers: Record<string, string> = { 'content-type': 'application/json', host: 'example.com' };
        for (const n of extra) headers[n] = n;
        const parsed = parseTc3Authorization(
          signTc3(
            { method: 'POST', url: 'https://example.com/', headers, body: '{}' },
            { secretId: id, secretKey: 'k' },
            { service: svc, timestamp: ts, signedHeaders: extra },
          ),
        );
        expect(parsed.secretId).toBe(id);
        expect(parsed.service).toBe(svc);
        expect(parsed.date).toBe(new Date(ts * 1000).toISOString().slice(0, 10));
        expect(parsed.signedHeaders).toEqual([...new Set(['content-type', 'host', ...extra])].sort());
        expect(parsed.signature).toMatch(/^[0-9a-f]{64}$/);
      }),
      { numRuns: 200 },
    );
  });

  it("accepts the SDK's own output", () => {
    const auth = Sign.sign3({
      method: 'POST',
      url: 'https://sts.tencentcloudapi.com/',
      payload: {},
      timestamp: 1_764_504_000,
      service: 'sts',
      secretId: 'AKIDabc',
      secretKey: 'k',
      multipart: false,
      boundary: '',
      headers: { 'Content-Type': 'application/json' },
    });
    expect(parseTc3Authorization(auth)).toMatchObject({ secretId: 'AKIDabc', date: '2025-11-30', service: 'sts', signedHeaders: ['content-type', 'host'] });
  });

  const good = `TC3-HMAC-SHA256 Credential=AKIDabc/2025-11-30/sts/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature=${'a'.repeat(64)}`;
  it.each([
    ['another algorithm', good.replace('TC3-HMAC-SHA256', 'AWS4-HMAC-SHA256'), /does not start with/],
    [
      'parts out of order',
      `TC3-HMAC-SHA256 SignedHeaders=content-type;host, Credential=AKIDabc/2025-11-30/sts/tc3_request, Signature=${'a'.repeat(64)}`,
      /Credential=/,
    ],
    ['a fourth part', `${good}, Extra=1`, /Credential=/],
    ['a scope with a fifth element', good.replace('AKIDabc/', 'AKIDabc/x/'), /Credential is not/],
    ['a scope not ending in tc3_request', good.replace('tc3_request', 'aws4_request'), /Credential is not/],
    ['unsorted SignedHeaders', good.replace('content-type;host;x-tc-action', 'content-type;x-tc-action;host'), /not sorted/],
    ['repeated SignedHeaders', good.replace('content-type;host;x-tc-action', 'content-type;host;host'), /not sorted/],
    ['upper-case SignedHeaders', good.replace('x-tc-action', 'X-TC-Action'), /not a lower-case header name/],
    ['no host in SignedHeaders', good.replace('content-type;host;x-tc-action', 'content-type;x-tc-action'), /do not include host/],
    ['a short signature', good.slice(0, -1), /64 lower-case hex/],
    ['an upper-case signature', good.replace('a'.repeat(64), 'A'.repeat(64)), /64 lower-case hex/],
  ])('refuses %s', (_, value, message) => {
    expect(() => parseTc3Authorization(value)).toThrow(message);
  });
});
