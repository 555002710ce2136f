import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationError } from '../../src/issuer/attestor.js';
import { AlibabaEcsIdentityAttestor, ecsSignedContent } from '../../src/issuer/attestors/alibaba-ecs-identity.js';
import { encodeSubjectToken } from '../../src/protocol/issuer-token-exchange.js';
import { checkDerShape, DerShapeError } from '../../src/util/der-shape.js';
import { base64Lines, cmsSign, makeSigningCa, type SigningCa } from '../support/fake-alibaba-cloud.js';
import { deepNesting, indefiniteLength, manyNulls, nonMinimalLength, nullsInOctetString } from '../support/hostile-der.js';

/**
 * Issue 11, item 2: a hostile PKCS#7 (many elements, deep nesting, BER forms) is refused by a
 * cheap walk over its headers, with a reason word, before asn1js builds anything; what Alibaba
 * sends (every layout the research leaves open) still verifies.
 */

const ISSUER = 'https://issuer.crosscred.test';
const DOCUMENT = JSON.stringify({
  'owner-account-id': '1335926999564873',
  'instance-id': 'i-8vb8p62ryuejka7tcz4p',
  'region-id': 'cn-zhangjiakou',
  'zone-id': 'cn-zhangjiakou-a',
  'instance-type': 'ecs.s6-c1m1.small',
  'image-id': 'centos_7_8_x64_20G_alibase_20200914.vhd',
  'serial-number': '8e794d59-a809-453b-8f5a-9d0a0b29660a',
  'private-ipv4': '192.168.1.215',
  mac: '00:16:3e:13:9a:81',
});
let ca: SigningCa;
let attestor: AlibabaEcsIdentityAttestor;

beforeAll(async () => {
  ca = await makeSigningCa('pkcs7-shape');
  attestor = new AlibabaEcsIdentityAttestor({ signingCertificatesPem: [ca.signerCertPem] });
});
afterAll(async () => {
  await ca?.close();
});

function context() {
  return { issuerUrl: ISSUER, nowWall: Date.now(), signal: new AbortController().signal };
}

function audience(): string {
  return JSON.stringify({ aud: ISSUER, signingTime: Math.floor(Date.now() / 1000) });
}

async function refusalOf(der: Buffer): Promise<AttestationError> {
  const token = encodeSubjectToken({ document: DOCUMENT, pkcs7: base64Lines(der), audience: audience() });
  const err = await attestor.attest(token, context()).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AttestationError);
  return err as AttestationError;
}

describe('a hostile PKCS#7 is refused before parsing, with a reason', () => {
  const cases: Array<[string, Buffer, string]> = [
    ['2,000 NULLs in a SEQUENCE (4 KiB)', manyNulls(2_000), 'pkcs7-too-many-nodes'],
    ['2,000 NULLs inside an OCTET STRING, where parsers look for embedded ASN.1', nullsInOctetString(2_000), 'pkcs7-too-many-nodes'],
    ['SEQUENCEs nested 200 deep', deepNesting(200), 'pkcs7-too-deep'],
    ['an indefinite length (BER)', indefiniteLength(10), 'pkcs7-indefinite-length'],
    ['a length in the long form where the short one fits (BER)', nonMinimalLength(), 'pkcs7-not-der'],
  ];
  for (const [name, der, reason] of cases) {
    it(name, async () => {
      expect(der.length).toBeLessThanOrEqual(6 * 1024);
      const err = await refusalOf(der);
      expect(err.oauthError).toBe('invalid_request');
      expect(err.message).toContain(`(${reason})`);
      expect(err.message).toMatch(/refused before parsing/);
    });
  }

  it("the issue's 24 KiB run of NULLs is refused by its size alone", async () => {
    const err = await refusalOf(manyNulls(12_288));
    expect(err.oauthError).toBe('invalid_request');
    expect(err.message).toMatch(/the PKCS#7 is longer than 8192 characters/);
  });
});

describe('what Alibaba may send still verifies', () => {
  for (const layout of ['detached', 'attached'] as const) {
    for (const embedCertificate of [false, true]) {
      it(`${layout}, ${embedCertificate ? 'with' : 'without'} the signing certificate`, async () => {
        const aud = audience();
        const der = await cmsSign(ca, ecsSignedContent(DOCUMENT, aud), { layout, embedCertificate });
        const shape = checkDerShape(der, { maxNodes: 512, maxDepth: 32 });
        // Far inside the limits the attestor uses (512 elements, 32 deep).
        expect(shape.nodes).toBeLessThan(256);
        expect(shape.depth).toBeLessThan(16);
        const identity = await attestor.attest(encodeSubjectToken({ document: DOCUMENT, pkcs7: base64Lines(der), audience: aud }), context());
        expect(identity.instanceId).toBe('i-8vb8p62ryuejka7tcz4p');
      });
    }
  }
});

describe('checkDerShape', () => {
  const limits = { maxNodes: 100, maxDepth: 8 };
  const reasonOf = (bytes: Buffer) => {
    try {
      checkDerShape(bytes, limits);
      return 'accepted';
    } catch (err) {
      expect(err).toBeInstanceOf(DerShapeError);
      return (err as DerShapeError).reason;
    }
  };

  it('counts elements and depth, those inside OCTET and BIT STRINGs included', () => {
    expect(checkDerShape(Buffer.from('30020500', 'hex'), { maxNodes: 10, maxDepth: 4 })).toEqual({ nodes: 2, depth: 2 });
    // BIT STRING (no unused bits) holding SEQUENCE { NULL }: 3 elements, 3 deep.
    expect(checkDerShape(Buffer.from('03050030020500', 'hex'), { maxNodes: 10, maxDepth: 4 })).toEqual({ nodes: 3, depth: 3 });
    // An OCTET STRING of plain bytes is data: 1 element (the failed look inside counts as 1).
    expect(checkDerShape(Buffer.from('0403ffffff', 'hex'), { maxNodes: 10, maxDepth: 4 }).nodes).toBe(2);
  });

  it('refuses trailing bytes, cut-short headers and lengths past the end', () => {
    expect(reasonOf(Buffer.from('05000500', 'hex'))).toBe('not-der');
    expect(reasonOf(Buffer.from('30', 'hex'))).toBe('not-der');
    expect(reasonOf(Buffer.from('300505', 'hex'))).toBe('not-der');
    expect(reasonOf(Buffer.from('3003050000', 'hex'))).toBe('not-der');
  });

  it('refuses a constructed OCTET STRING and a high tag number (BER forms)', () => {
    expect(reasonOf(Buffer.from('24030401ff', 'hex'))).toBe('not-der');
    expect(reasonOf(Buffer.from('1f2200', 'hex'))).toBe('not-der');
  });

  it('stops at the limits, inside embedded data too', () => {
    expect(reasonOf(manyNulls(200))).toBe('too-many-nodes');
    expect(reasonOf(nullsInOctetString(200))).toBe('too-many-nodes');
    expect(reasonOf(deepNesting(10))).toBe('too-deep');
    expect(reasonOf(manyNulls(50))).toBe('accepted');
  });
});
