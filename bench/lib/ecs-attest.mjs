// Alibaba ECS instance identity attestations for the issuer benchmark, made exactly as the fake
// metadata server makes them (test/support/fake-alibaba-cloud.ts, from Alibaba's documentation):
// the one-line identity document, the audience `{"aud":"<issuer URL>","signingTime":<s>}` appended
// inside it, signed detached by `openssl cms -sign -binary -nocerts -md sha256` (cmsSign of
// test/support/fake-alibaba-cloud.ts) with a test CA's RSA-2048 signer. Real PKCS#7: `attest` runs one openssl process per attestation (16-20 ms each
// here, too slow for 10,000 inside the issuer's 5-minute signingTime window); `fastSigner` makes the
// same bytes in process (see there). The CA is the test suite's (makeSigningCa in
// test/support/fake-alibaba-cloud.ts, loaded through test-support.mjs).
import { createHash, createPrivateKey, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { testSupport } from './test-support.mjs';

/** `openssl cms -sign -binary -md sha256 -nocerts`, detached: the test suite's own signer, as the fake metadata server signs. */
const { cmsSign } = await testSupport('fake-alibaba-cloud.ts');

/** The identity document of VM number `i` in `accountId`, compact, in a real instance's field order. */
export function documentOf(i, accountId) {
  const id = `i-bench${String(i).padStart(13, '0')}`;
  return JSON.stringify({
    'zone-id': 'cn-hangzhou-h',
    'serial-number': `8e794d59-a809-453b-8f5a-${String(i).padStart(12, '0')}`,
    'instance-id': id,
    'region-id': 'cn-hangzhou',
    'private-ipv4': `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    'owner-account-id': accountId,
    mac: '00:16:3e:13:9a:81',
    'image-id': 'centos_7_8_x64_20G_alibase_20200914.vhd',
    'instance-type': 'ecs.s6-c1m1.small',
  });
}

/** The audience and the signed bytes of `document` (Alibaba: the audience appended inside the document). */
function signedContent(issuerUrl, document) {
  const audience = JSON.stringify({ aud: issuerUrl, signingTime: Math.floor(Date.now() / 1000) });
  return { audience, content: `${document.slice(0, -1)},"audience":${JSON.stringify(audience)}}` };
}

const subjectTokenOf = (document, der, audience) => Buffer.from(JSON.stringify({ document, pkcs7: base64Lines(der), audience }), 'utf8').toString('base64url');
/** Base64 in 64-character lines, as the metadata server serves it. */
const base64Lines = (der) =>
  `${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trimEnd()}\n`;

/** One attestation's subject token (base64url JSON {document, pkcs7, audience}), signed now by openssl. */
export async function attest(ca, issuerUrl, document) {
  const { audience, content } = signedContent(issuerUrl, document);
  return subjectTokenOf(document, await cmsSign(ca, content), audience);
}

const OID_PREFIX = Buffer.from([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09]);
const oid = (last) => Buffer.concat([OID_PREFIX, Buffer.from([last])]);
/** pkcs9 contentType (…9.3), messageDigest (…9.4), signingTime (…9.5). */
const OID_CONTENT_TYPE = oid(3);
const OID_MESSAGE_DIGEST = oid(4);
const OID_SIGNING_TIME = oid(5);

/**
 * Signs like openssl, in process, about 1-2 ms each: one message from `openssl cms -sign` is the
 * template, and for each new content only the fixed-length fields change — the messageDigest
 * (SHA-256 of the content), the signingTime (UTCTime) and the RSA PKCS#1 v1.5 signature over the
 * signed attributes (deterministic, 256 bytes). The result is what openssl would have written at
 * that second; `check` compares one with openssl's own for the same content and second.
 */
export async function fastSigner(ca) {
  const template = await cmsSign(ca, Buffer.from('{"template":true}'));
  const key = createPrivateKey(await readFile(ca.signerKeyPath));
  const at = (needle, what) => {
    const i = template.indexOf(needle);
    if (i < 0 || template.indexOf(needle, i + 1) >= 0) throw new Error(`the openssl template has no single ${what}`);
    return i;
  };
  // messageDigest attribute: OID, SET (31 22), OCTET STRING (04 20), 32 bytes.
  const digestAt = at(OID_MESSAGE_DIGEST, 'messageDigest') + 11 + 4;
  // signingTime attribute: OID, SET (31 0f), UTCTime (17 0d), 13 characters YYMMDDHHMMSSZ.
  const timeAt = at(OID_SIGNING_TIME, 'signingTime') + 11 + 4;
  if (template[timeAt - 2] !== 0x17 || template[digestAt - 2] !== 0x04) throw new Error('unexpected openssl attribute layout');
  // The signed attributes: [0] IMPLICIT (a0 81 LL, or a0 82 LL LL) just before the first attribute (contentType: 30 18 OID…).
  const attrsAt = at(OID_CONTENT_TYPE, 'contentType') - 2;
  const longForm = template[attrsAt - 4] === 0xa0 && template[attrsAt - 3] === 0x82;
  if (!longForm && !(template[attrsAt - 3] === 0xa0 && template[attrsAt - 2] === 0x81)) throw new Error('unexpected openssl signed-attributes header');
  const attrsHeader = template.subarray(attrsAt - (longForm ? 4 : 3), attrsAt);
  const attrsLength = longForm ? template.readUInt16BE(attrsAt - 2) : template[attrsAt - 1];
  // The signature: the message's last element, OCTET STRING (04 82 01 00) of 256 bytes.
  const sigAt = template.length - 256;
  if (template.readUInt32BE(sigAt - 4) !== 0x04820100) throw new Error('the openssl template does not end with a 256-byte signature');

  const signDer = (content, date) => {
    const der = Buffer.from(template);
    createHash('sha256').update(content).digest().copy(der, digestAt);
    der.write(utcTime(date), timeAt, 'latin1');
    // What is signed is the attributes' DER with the SET OF tag (31), not the [0] tag (RFC 5652 §5.4).
    const signed = Buffer.concat([Buffer.from([0x31]), attrsHeader.subarray(1), der.subarray(attrsAt, attrsAt + attrsLength)]);
    sign('sha256', signed, key).copy(der, sigAt);
    return der;
  };
  return {
    attest: (issuerUrl, document) => {
      const { audience, content } = signedContent(issuerUrl, document);
      return subjectTokenOf(document, signDer(Buffer.from(content), new Date()), audience);
    },
    /** True when, for one content, the in-process message equals openssl's byte for byte (retried if the second turned). */
    check: async () => {
      for (let i = 0; i < 3; i++) {
        const content = Buffer.from(`{"check":${i}}`);
        const before = Math.floor(Date.now() / 1000);
        const theirs = await cmsSign(ca, content);
        if (Math.floor(Date.now() / 1000) !== before) continue;
        if (signDer(content, new Date(before * 1000)).equals(theirs)) return true;
        return false;
      }
      return false;
    },
  };
}

/** UTCTime as openssl writes it: YYMMDDHHMMSSZ. */
function utcTime(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
}

/**
 * The same attestation with the last 16 bytes of its DER (inside the RSA signature, the message's
 * last element) replaced by random ones: well-formed, so the issuer pays a full verification to
 * refuse it, as it would for a hostile client's forged signature.
 */
export function forge(subjectToken, random) {
  const a = JSON.parse(Buffer.from(subjectToken, 'base64url').toString('utf8'));
  const der = Buffer.from(a.pkcs7.replace(/\s+/g, ''), 'base64');
  random(der.subarray(der.length - 16));
  a.pkcs7 = base64Lines(der);
  return Buffer.from(JSON.stringify(a), 'utf8').toString('base64url');
}

/** `count` attestations signed in process by `signer` (fastSigner); returns tokens and the time taken (ms). */
export function attestManyFast(signer, issuerUrl, count, docOf) {
  const started = performance.now();
  const tokens = Array.from({ length: count }, (_, i) => signer.attest(issuerUrl, docOf(i)));
  return { tokens, ms: performance.now() - started };
}

/** `count` attestations, documents from `docOf(i)`, `parallel` openssl processes at once; returns tokens and the time taken (ms). */
export async function attestMany(ca, issuerUrl, count, docOf, parallel) {
  const started = performance.now();
  const out = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) out[i] = await attest(ca, issuerUrl, docOf(i));
  };
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
  return { tokens: out, ms: performance.now() - started };
}
