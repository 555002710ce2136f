import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import * as pkijs from 'pkijs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { CrosscredError } from '../../src/core/errors.js';
import { type AttestationContext, AttestationError, type Attestor } from '../../src/issuer/attestor.js';
import { AlibabaEcsIdentityAttestor, ecsSignedContent } from '../../src/issuer/attestors/alibaba-ecs-identity.js';
import { AlibabaRamRoleAttestor } from '../../src/issuer/attestors/alibaba-ram-role.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/issuer-server.js';
import { EcsMetadataClient } from '../../src/platform/alibaba/ecs-metadata.js';
import { type AlibabaCredential, captureSignedRequest, ecsRamRoleCredential, signGetCallerIdentity } from '../../src/platform/alibaba/ram-request-signer.js';
import {
  type AlibabaEcsIdentityAttestation,
  BINDING_HEADERS,
  encodeSubjectToken,
  type SignedRequestAttestation,
  SUBJECT_TOKEN_TYPES,
  type SubjectTokenType,
} from '../../src/protocol/issuer-token-exchange.js';
import { AlibabaEcsTokenSource, type AlibabaEcsTokenSourceOptions } from '../../src/sources/alibaba-ecs-token-source.js';
import { IssuerClient } from '../../src/sources/issuer-client.js';
import type { SourceWarning } from '../../src/sources/source-warnings.js';
import { memoryLogger } from '../support/chain.js';
import {
  base64Lines,
  cmsSign,
  cmsVerify,
  FakeAlibabaSts,
  FakeEcsMetadata,
  makeSigningCa,
  type SigningCa,
  sampleInstance,
} from '../support/fake-alibaba-cloud.js';
import { FakeClock } from '../support/fake-clock.js';
import { baseConfig, configFrom, freePort, makeKey, tempDir } from '../support/issuer-fixtures.js';

/**
 * Everything Alibaba in issue 7: the ECS identity and RAM-role attestors, called directly with
 * attestations the alibaba-ecs source's own code gathers from the fakes (an ECS metadata server
 * whose PKCS#7 is made by `openssl cms`, an STS that checks signatures with Alibaba's official
 * signer), each attack refused with a clear, secret-free reason; then the source end to end
 * through IssuerClient and the real `crosscred issuer` token endpoint.
 */

const ISSUER = 'https://issuer.crosscred.test';
const { default: Credential, Config: CredentialConfig } = createRequire(import.meta.url)('@alicloud/credentials') as typeof import('@alicloud/credentials');
const instance = sampleInstance();

let ca: SigningCa;
let otherCa: SigningCa;
let sts: FakeAlibabaSts;
let metadata: FakeEcsMetadata;
let metadataClient: EcsMetadataClient;
let ecsAttestor: AlibabaEcsIdentityAttestor;
let ramAttestor: AlibabaRamRoleAttestor;
let credential: AlibabaCredential;
/** Every refusal seen, to check that none carries a secret. */
const descriptions: string[] = [];

function context(overrides: Partial<AttestationContext> = {}): AttestationContext {
  return { issuerUrl: ISSUER, nowWall: Date.now(), signal: new AbortController().signal, ...overrides };
}

async function refusal(promise: Promise<unknown>): Promise<AttestationError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(AttestationError);
    descriptions.push((err as Error).message);
    return err as AttestationError;
  }
  throw new Error('the attestation was accepted');
}

/** What the source sends for ecs-identity: token-mode session, document, PKCS#7 over `audience`. */
async function identityAttestation(audience: string | null, from: FakeEcsMetadata = metadata): Promise<AlibabaEcsIdentityAttestation> {
  const client = from === metadata ? metadataClient : new EcsMetadataClient({ baseUrl: from.url, timeoutMs: 3000 });
  const session = await client.token();
  const document = await client.get('/latest/dynamic/instance-identity/document', session, 8192, 'document');
  const query = audience === null ? '' : `?audience=${encodeURIComponent(audience)}`;
  const pkcs7 = await client.get(`/latest/dynamic/instance-identity/pkcs7${query}`, session, 32768, 'pkcs7');
  if (client !== metadataClient) await client.close();
  return { document, pkcs7, audience: audience ?? '' };
}

function audienceFor(aud: string, signingTime = Math.floor(Date.now() / 1000)): string {
  return JSON.stringify({ aud, signingTime });
}

function tokenOf(attestation: AlibabaEcsIdentityAttestation | SignedRequestAttestation): string {
  return encodeSubjectToken(attestation);
}

function signed(options: { issuerUrl?: string; credential?: AlibabaCredential; stsUrl?: string } = {}): Promise<SignedRequestAttestation> {
  return signGetCallerIdentity({
    credential: options.credential ?? credential,
    stsUrl: options.stsUrl ?? sts.url,
    issuerUrl: options.issuerUrl ?? ISSUER,
    timeoutMs: 3000,
  });
}

function signedHeadersOf(request: SignedRequestAttestation): string[] {
  return /SignedHeaders=([^,]+)/.exec(request.headers['authorization']!)![1]!.split(';');
}

/** A loopback server that must never be contacted: counts every connection. */
async function canary(): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"IdentityType":"AssumedRoleUser","Arn":"acs:ram::1:assumed-role/evil/vm-ram-i-evil"}'),
  );
  server.on('connection', () => hits++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    hits: () => hits,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([makeSigningCa('alibaba'), makeSigningCa('attacker')]);
  sts = await FakeAlibabaSts.start();
  metadata = await FakeEcsMetadata.start({ instance, signer: ca, sts, requireToken: true });
  metadataClient = new EcsMetadataClient({ baseUrl: metadata.url, timeoutMs: 3000 });
  ecsAttestor = new AlibabaEcsIdentityAttestor({ signingCertificatesPem: [ca.signerCertPem] });
  ramAttestor = new AlibabaRamRoleAttestor({ extraStsEndpoints: [sts.url], timeoutMs: 3000 });
  // The official ecs_ram_role provider, in token mode, against the fake metadata server.
  credential = ecsRamRoleCredential({ metadataUrl: metadata.url, timeoutMs: 3000 });
});

afterAll(async () => {
  await metadataClient?.close();
  await Promise.all([metadata?.close(), sts?.close()]);
  await Promise.all([ca?.close(), otherCa?.close()]);
  // No refusal anywhere in this file carried a secret: keys, tokens, signatures, the PKCS#7.
  const secrets = [...(metadata?.roleKey ? [metadata.roleKey.accessKeySecret, metadata.roleKey.securityToken] : [])];
  for (const text of descriptions) {
    for (const secret of secrets) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/[A-Za-z0-9+/=]{60,}/);
    expect(text).not.toMatch(/Signature=|[0-9a-f]{64}/);
  }
});

describe('the signed content of a detached ECS PKCS#7 (ecsSignedContent)', () => {
  it('inserts ,"audience":<JSON string> before the final brace, escaping the audience JSON', () => {
    const audience = audienceFor(ISSUER, 1_780_000_000);
    expect(ecsSignedContent('{"instance-id":"i-1"}', audience).toString()).toBe(`{"instance-id":"i-1","audience":${JSON.stringify(audience)}}`);
    expect(JSON.parse(ecsSignedContent('{"a":"b"}', audience).toString())).toEqual({ a: 'b', audience });
  });

  it('ignores a trailing line break and refuses what is not a non-empty object', () => {
    expect(ecsSignedContent('{"a":"b"}\r\n', 'x').toString()).toBe('{"a":"b","audience":"x"}');
    for (const bad of ['', '{}', ' {}', '[1]', '"s"', '{"a":1']) expect(() => ecsSignedContent(bad, 'x')).toThrow(AttestationError);
  });

  it("is exactly what openssl signed in the fake metadata server (written separately from Alibaba's description)", async () => {
    const audience = audienceFor(ISSUER);
    const attestation = await identityAttestation(audience);
    const der = Buffer.from(attestation.pkcs7.replace(/\s+/g, ''), 'base64');
    expect(await cmsVerify(ca, der, ecsSignedContent(attestation.document, audience))).toBe(true);
    expect(await cmsVerify(ca, der, Buffer.from(attestation.document))).toBe(false);
  });
});

describe('AlibabaEcsIdentityAttestor', () => {
  it('accepts a fresh detached attestation and takes the claims from the signed document', async () => {
    const signingTime = Math.floor(Date.now() / 1000);
    const attestation = await identityAttestation(audienceFor(ISSUER, signingTime));
    expect(attestation.pkcs7).toContain('\n'); // base64 in lines, as the metadata server serves it
    const identity = await ecsAttestor.attest(tokenOf(attestation), context());
    expect(identity).toMatchObject({
      kind: SUBJECT_TOKEN_TYPES.alibabaEcsIdentity,
      cloud: 'alibaba',
      accountId: instance.accountId,
      region: instance.regionId,
      instanceId: instance.instanceId,
      attributes: {
        'zone-id': instance.zoneId,
        'instance-type': instance.instanceType,
        'image-id': instance.imageId,
        'serial-number': instance.serialNumber,
        'private-ipv4': instance.privateIpv4,
        mac: instance.mac,
      },
      replayUntilWall: signingTime * 1000 + 300_000,
    });
    expect(identity.roleName).toBeUndefined();
    // The metadata server was used in token mode only.
    expect(metadata.records.filter((r) => r.method === 'GET').every((r) => r.token === 'valid')).toBe(true);
  });

  it('accepts the attached layout, where the content inside the PKCS#7 is authoritative', async () => {
    metadata.signOptions = { layout: 'attached' };
    try {
      const attestation = await identityAttestation(audienceFor(ISSUER));
      const identity = await ecsAttestor.attest(tokenOf(attestation), context());
      expect(identity).toMatchObject({ accountId: instance.accountId, instanceId: instance.instanceId, region: instance.regionId });
      // The caller's copy of the document does not matter: the claims are the signed ones.
      const lying = { ...attestation, document: attestation.document.replace(instance.instanceId, 'i-someoneelse000000') };
      expect((await ecsAttestor.attest(tokenOf(lying), context())).instanceId).toBe(instance.instanceId);
      // But the audience inside must be the one the attestation names.
      // (Another signingTime than the signed one, whatever second this test runs in.)
      const signedTime = (JSON.parse(attestation.audience) as { signingTime: number }).signingTime;
      const otherAudience = { ...attestation, audience: audienceFor(ISSUER, signedTime - 5) };
      expect((await refusal(ecsAttestor.attest(tokenOf(otherAudience), context()))).message).toMatch(/audience inside the signed content differs/);
    } finally {
      metadata.signOptions = {};
    }
  });

  it('accepts an ECDSA signing certificate, and a certificate among several pinned ones', async () => {
    const ecCa = await makeSigningCa('alibaba-ec', 'ec');
    try {
      const audience = audienceFor(ISSUER);
      const attestation = await identityAttestation(audience);
      const der = await cmsSign(ecCa, ecsSignedContent(attestation.document, audience));
      const attestor = new AlibabaEcsIdentityAttestor({ signingCertificatesPem: [`${ca.signerCertPem}${ecCa.signerCertPem}`] });
      expect((await attestor.attest(tokenOf({ ...attestation, pkcs7: base64Lines(der) }), context())).instanceId).toBe(instance.instanceId);
    } finally {
      await ecCa.close();
    }
  });

  it('gives the same replayKey to the same attestation, even re-encoded with certificates added', async () => {
    const signingTime = Math.floor(Date.now() / 1000);
    const attestation = await identityAttestation(audienceFor(ISSUER, signingTime));
    const first = await ecsAttestor.attest(tokenOf(attestation), context());
    const again = await ecsAttestor.attest(tokenOf(attestation), context());
    expect(again.replayKey).toBe(first.replayKey);
    // A different DER carrying the same signature (the certificates field is not signed).
    const der = Buffer.from(attestation.pkcs7.replace(/\s+/g, ''), 'base64');
    const info = pkijs.ContentInfo.fromBER(der);
    const sd = new pkijs.SignedData({ schema: info.content });
    sd.certificates = [pkijs.Certificate.fromBER(Buffer.from(otherCa.signerCertPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64'))];
    const reencoded = Buffer.from(new pkijs.ContentInfo({ contentType: info.contentType, content: sd.toSchema(true) }).toSchema().toBER());
    expect(reencoded.equals(der)).toBe(false);
    const replayed = await ecsAttestor.attest(tokenOf({ ...attestation, pkcs7: reencoded.toString('base64') }), context());
    expect(replayed.replayKey).toBe(first.replayKey);
    // Another signing time is another attestation, and another key.
    const later = await ecsAttestor.attest(tokenOf(await identityAttestation(audienceFor(ISSUER, signingTime - 7))), context());
    expect(later.replayKey).not.toBe(first.replayKey);
  });

  describe('refuses, with a clear reason', () => {
    it('an expired attestation (signed more than maxAge ago)', async () => {
      const attestation = await identityAttestation(audienceFor(ISSUER, Math.floor(Date.now() / 1000) - 301));
      const err = await refusal(ecsAttestor.attest(tokenOf(attestation), context()));
      expect(err.oauthError).toBe('invalid_grant');
      expect(err.message).toMatch(/signed 30[12] s ago; at most 300 s/);
    });

    it('a future-dated attestation (beyond the allowed skew)', async () => {
      const attestation = await identityAttestation(audienceFor(ISSUER, Math.floor(Date.now() / 1000) + 45));
      const err = await refusal(ecsAttestor.attest(tokenOf(attestation), context()));
      expect(err.message).toMatch(/4[456] s in the future; at most 30 s/);
      // Within the skew it is fine.
      await ecsAttestor.attest(tokenOf(await identityAttestation(audienceFor(ISSUER, Math.floor(Date.now() / 1000) + 20))), context());
    });

    it('an attestation bound to another issuer, or to this one spelled differently', async () => {
      for (const aud of ['https://evil.example', `${ISSUER}/`, ISSUER.toUpperCase()]) {
        const err = await refusal(ecsAttestor.attest(tokenOf(await identityAttestation(audienceFor(aud))), context()));
        expect(err.oauthError).toBe('invalid_grant');
        expect(err.message).toContain('not to this issuer');
      }
    });

    it('an attestation whose audience was swapped after signing', async () => {
      const attestation = await identityAttestation(audienceFor('https://evil.example'));
      const err = await refusal(ecsAttestor.attest(tokenOf({ ...attestation, audience: audienceFor(ISSUER) }), context()));
      expect(err.message).toMatch(/signature does not verify/);
    });

    it('a PKCS#7 fetched without an audience (not bound to anything)', async () => {
      const unbound = await identityAttestation(null);
      const err = await refusal(ecsAttestor.attest(tokenOf({ ...unbound, audience: audienceFor(ISSUER) }), context()));
      expect(err.message).toMatch(/signature does not verify/);
      metadata.signOptions = { layout: 'attached' };
      try {
        const attached = await identityAttestation(null);
        const err2 = await refusal(ecsAttestor.attest(tokenOf({ ...attached, audience: audienceFor(ISSUER) }), context()));
        expect(err2.message).toMatch(/has no audience/);
      } finally {
        metadata.signOptions = {};
      }
    });

    it('a document signed by another CA, with or without its certificate inside the message', async () => {
      metadata.signer = otherCa;
      try {
        for (const embedCertificate of [false, true]) {
          metadata.signOptions = { embedCertificate };
          const err = await refusal(ecsAttestor.attest(tokenOf(await identityAttestation(audienceFor(ISSUER))), context()));
          expect(err.message).toMatch(/not signed with a configured Alibaba signing certificate/);
        }
      } finally {
        metadata.signer = ca;
        metadata.signOptions = {};
      }
    });

    it("a signature by another key that claims the pinned certificate's issuer and serial number", async () => {
      // The attacker's certificate copies the pinned one's issuer name and serial number.
      const { execFile } = await import('node:child_process');
      const run = (args: string[]) => new Promise<string>((resolve, reject) => execFile('openssl', args, (e, out) => (e ? reject(e) : resolve(out))));
      const serial = (await run(['x509', '-noout', '-serial', '-in', ca.signerCertPath])).trim().split('=')[1]!;
      const impostor = await makeSigningCa('alibaba');
      try {
        await run([
          'x509',
          '-req',
          '-in',
          join(impostor.dir, 'signer.csr'),
          '-CA',
          impostor.caPath,
          '-CAkey',
          join(impostor.dir, 'ca.key'),
          '-set_serial',
          `0x${serial}`,
          '-out',
          impostor.signerCertPath,
          '-days',
          '1',
        ]);
        const audience = audienceFor(ISSUER);
        const attestation = await identityAttestation(audience);
        const der = await cmsSign(impostor, ecsSignedContent(attestation.document, audience));
        const err = await refusal(ecsAttestor.attest(tokenOf({ ...attestation, pkcs7: base64Lines(der) }), context()));
        expect(err.message).toMatch(/signature does not verify against the configured Alibaba signing certificate/);
      } finally {
        await impostor.close();
      }
    });

    it('a tampered document (detached) or tampered signed content (attached)', async () => {
      const attestation = await identityAttestation(audienceFor(ISSUER));
      const tampered = { ...attestation, document: attestation.document.replace(instance.instanceId, 'i-2ze0000000000000000') };
      expect((await refusal(ecsAttestor.attest(tokenOf(tampered), context()))).message).toMatch(/tampered/);
      const audience = audienceFor(ISSUER);
      const content = ecsSignedContent(attestation.document, audience);
      const der = await cmsSign(ca, content, { layout: 'attached' });
      const at = der.indexOf(Buffer.from(instance.instanceId));
      expect(at).toBeGreaterThan(0);
      der[at + 2] = 'z'.charCodeAt(0);
      expect((await refusal(ecsAttestor.attest(tokenOf({ ...attestation, audience, pkcs7: der.toString('base64') }), context()))).message).toMatch(
        /does not verify/,
      );
    });

    it('two signers, a SHA-1 digest, or something that is not a PKCS#7', async () => {
      const audience = audienceFor(ISSUER);
      const attestation = await identityAttestation(audience);
      const content = ecsSignedContent(attestation.document, audience);
      const sha1 = await cmsSign(ca, content, { digest: 'sha1' });
      expect((await refusal(ecsAttestor.attest(tokenOf({ ...attestation, pkcs7: sha1.toString('base64') }), context()))).message).toMatch(
        /digest algorithm 1\.3\.14\.3\.2\.26; only SHA-256/,
      );
      const { execFile } = await import('node:child_process');
      const input = join(ca.dir, 'two-signers.json');
      await writeFile(input, content);
      const twoSigners = await new Promise<Buffer>((resolve, reject) =>
        execFile(
          'openssl',
          [
            'cms',
            '-sign',
            '-binary',
            '-nocerts',
            '-in',
            input,
            '-signer',
            ca.signerCertPath,
            '-inkey',
            ca.signerKeyPath,
            '-signer',
            otherCa.signerCertPath,
            '-inkey',
            otherCa.signerKeyPath,
            '-outform',
            'DER',
          ],
          { encoding: 'buffer' },
          (e, out) => (e ? reject(e) : resolve(out)),
        ),
      );
      expect((await refusal(ecsAttestor.attest(tokenOf({ ...attestation, pkcs7: twoSigners.toString('base64') }), context()))).message).toMatch(
        /2 signers; exactly one/,
      );
      for (const pkcs7 of ['not base64!', Buffer.from('hello').toString('base64')]) {
        const err = await refusal(ecsAttestor.attest(tokenOf({ ...attestation, pkcs7 }), context()));
        expect(err.oauthError).toBe('invalid_request');
      }
    });

    it('a subject token that is not an attestation', async () => {
      for (const token of ['', '!!!', Buffer.from('[]').toString('base64url'), Buffer.from('{"document":1}').toString('base64url'), 'A'.repeat(70_000)]) {
        expect((await refusal(ecsAttestor.attest(token, context()))).oauthError).toBe('invalid_request');
      }
      const noTime = await identityAttestation(JSON.stringify({ aud: ISSUER }));
      expect((await refusal(ecsAttestor.attest(tokenOf(noTime), context()))).message).toMatch(/signingTime/);
    });
  });

  it('refuses configurations it cannot use', () => {
    expect(() => new AlibabaEcsIdentityAttestor({ signingCertificatesPem: [] })).toThrow(/at least one signing certificate/);
    expect(() => new AlibabaEcsIdentityAttestor({ signingCertificatesPem: ['not a certificate'] })).toThrow(/holds no PEM certificate/);
    expect(() => new AlibabaEcsIdentityAttestor({ signingCertificatesPem: [ca.signerCertPem], maxAgeSeconds: 86_400 })).toThrow(/maxAgeSeconds/);
  });
});

describe('AlibabaRamRoleAttestor', () => {
  it("accepts a GetCallerIdentity the official SDK signed with the instance's RAM-role credentials", async () => {
    const request = await signed();
    expect(signedHeadersOf(request)).toEqual(
      expect.arrayContaining(['host', BINDING_HEADERS.alibaba, 'x-acs-security-token', 'x-acs-signature-nonce', 'x-acs-date']),
    );
    const before = sts.records.length;
    const identity = await ramAttestor.attest(tokenOf(request), context());
    expect(identity).toMatchObject({
      kind: SUBJECT_TOKEN_TYPES.alibabaRamRole,
      cloud: 'alibaba',
      accountId: instance.accountId,
      roleName: instance.roleName,
      instanceId: instance.instanceId,
      attributes: { 'session-name': `vm-ram-${instance.instanceId}`, 'instance-id-source': 'session-name', 'sts-endpoint': '127.0.0.1' },
    });
    expect(identity.region).toBeUndefined();
    const dateMs = Date.parse(request.headers['x-acs-date']!);
    expect(identity.replayUntilWall).toBe(dateMs + 300_000);
    // STS verified the signature with the official signer and got only the signed headers and the signature.
    const record = sts.records.slice(before);
    expect(record.map((r) => r.outcome)).toEqual(['ok']);
    expect(
      Object.keys(record[0]!.headers)
        .filter((h) => h.startsWith('x-acs-'))
        .sort(),
    ).toEqual(
      signedHeadersOf(request)
        .filter((h) => h.startsWith('x-acs-'))
        .sort(),
    );
    expect(String(record[0]!.headers['user-agent'] ?? '')).not.toContain('AlibabaCloud');
    // The metadata server was read in token mode, by the official credential provider.
    expect(metadata.records.some((r) => r.path === `/latest/meta-data/ram/security-credentials/${instance.roleName}` && r.token === 'valid')).toBe(true);
  });

  it('a replayed request: the same replayKey, and STS refuses the reused nonce', async () => {
    const request = await signed();
    const first = await ramAttestor.attest(tokenOf(request), context());
    const err = await refusal(ramAttestor.attest(tokenOf(request), context()));
    expect(err.oauthError).toBe('invalid_grant');
    expect(err.message).toMatch(/HTTP 400 SignatureNonceUsed/);
    // The replayKey is the endpoint's seen-set key: equal for the same request, whatever is added around it.
    const decorated = { ...request, headers: { ...request.headers, 'x-unsigned-extra': '1' } };
    await expect(ramAttestor.attest(tokenOf(decorated), context())).rejects.toThrow(/SignatureNonceUsed/);
    const another = await ramAttestor.attest(tokenOf(await signed()), context());
    expect(another.replayKey).not.toBe(first.replayKey);
  });

  it('refuses a request aimed at anything but an allow-listed STS endpoint, without contacting it (SSRF)', async () => {
    const trap = await canary();
    try {
      const request = await signed();
      const before = sts.records.length;
      const targets = [
        'https://evil.example/',
        trap.url, // loopback http, not configured
        'http://127.0.0.1:1/',
        'https://sts.aliyuncs.com.evil.example/',
        'https://sts.aliyuncs.com@evil.example/',
        `https://sts.aliyuncs.com:x@${new URL(trap.url).host}/`,
        `https://user@sts.aliyuncs.com/`,
        'https://sts.aliyuncs.com:8443/',
        'https://sts.aliyuncs.com/?Action=AssumeRole',
        'https://sts.aliyuncs.com/v2/',
        'https://sts.aliyuncs.com/#x',
        'http://sts.aliyuncs.com/',
        'https://sts.oss-cn-hangzhou.aliyuncs.com/',
        'https://evil.sts.cn-hangzhou.aliyuncs.com/',
        'https://sts.cn-hangzhou.aliyuncs.com\\@evil.example/',
        `${sts.url}x`,
        'file:///etc/passwd',
        'not a url',
      ];
      for (const url of targets) {
        const err = await refusal(ramAttestor.attest(tokenOf({ ...request, url }), context()));
        expect(err.oauthError, url).toMatch(/invalid_grant|invalid_request/);
      }
      expect(trap.hits()).toBe(0);
      expect(sts.records.length).toBe(before);
    } finally {
      await trap.close();
    }
  });

  it('lets official STS hosts past the allow-list (then checks the signed host matches)', async () => {
    const request = await signed();
    for (const url of [
      'https://sts.aliyuncs.com/',
      'https://sts.cn-hangzhou.aliyuncs.com/',
      'https://STS-VPC.cn-shanghai-finance-1.aliyuncs.com:443/',
      'https://sts.ap-southeast-1.aliyuncs.com/',
    ]) {
      const err = await refusal(ramAttestor.attest(tokenOf({ ...request, url }), context()));
      expect(err.message, url).toMatch(/signed host header does not name the STS host/);
    }
  });

  it('refuses a request not bound to this issuer: binding header missing, unsigned, or naming another issuer', async () => {
    const unbound = await captureSignedRequest({ credential, stsUrl: sts.url, extraHeaders: {}, timeoutMs: 3000 });
    expect(signedHeadersOf(unbound)).not.toContain(BINDING_HEADERS.alibaba);
    const before = sts.records.length;
    expect((await refusal(ramAttestor.attest(tokenOf(unbound), context()))).message).toMatch(/does not cover the x-acs-crosscred-audience header/);
    // The header added afterwards, outside the signature (GHSA-wq26-3j2m-4hvv).
    const added = { ...unbound, headers: { ...unbound.headers, [BINDING_HEADERS.alibaba]: ISSUER } };
    expect((await refusal(ramAttestor.attest(tokenOf(added), context()))).message).toMatch(/does not cover the x-acs-crosscred-audience header/);
    const elsewhere = await signed({ issuerUrl: 'https://other-issuer.example' });
    expect((await refusal(ramAttestor.attest(tokenOf(elsewhere), context()))).message).toMatch(/bound to "https:\/\/other-issuer.example".*not to this issuer/);
    expect(sts.records.length).toBe(before);
  });

  it('refuses another action, another version, a body, or a stale or future date', async () => {
    const before = sts.records.length;
    const assumeRole = await captureSignedRequest({
      credential,
      stsUrl: sts.url,
      extraHeaders: { [BINDING_HEADERS.alibaba]: ISSUER, 'x-acs-action': 'AssumeRole' },
      timeoutMs: 3000,
    });
    expect((await refusal(ramAttestor.attest(tokenOf(assumeRole), context()))).message).toMatch(/action "AssumeRole", not GetCallerIdentity/);
    const version = await captureSignedRequest({
      credential,
      stsUrl: sts.url,
      extraHeaders: { [BINDING_HEADERS.alibaba]: ISSUER, 'x-acs-version': '2099-01-01' },
      timeoutMs: 3000,
    });
    expect((await refusal(ramAttestor.attest(tokenOf(version), context()))).message).toMatch(/API version "2099-01-01"/);
    const request = await signed();
    expect((await refusal(ramAttestor.attest(tokenOf({ ...request, body: 'Action=AssumeRole' }), context()))).message).toMatch(/empty body/);
    expect((await refusal(ramAttestor.attest(tokenOf({ ...request, method: 'GET' as 'POST' }), context()))).message).toMatch(/POST/);
    const signedAt = Date.parse(request.headers['x-acs-date']!);
    expect((await refusal(ramAttestor.attest(tokenOf(request), context({ nowWall: signedAt + 301_000 })))).message).toMatch(/signed 301 s ago; at most 300 s/);
    expect((await refusal(ramAttestor.attest(tokenOf(request), context({ nowWall: signedAt - 31_000 })))).message).toMatch(/31 s in the future; at most 30 s/);
    expect(sts.records.length).toBe(before);
  });

  it('refuses what STS does not confirm: a tampered signed header, unknown, revoked or forged keys, a RAM user', async () => {
    const request = await signed();
    const date = new Date(Date.parse(request.headers['x-acs-date']!) - 1000).toISOString().replace('.000Z', 'Z');
    const tampered = await refusal(ramAttestor.attest(tokenOf({ ...request, headers: { ...request.headers, 'x-acs-date': date } }), context()));
    expect(tampered.message).toMatch(/HTTP 400 SignatureDoesNotMatch/);

    const forged = new Credential(
      new CredentialConfig({ type: 'sts', accessKeyId: 'STS.forged0000000000', accessKeySecret: 'forged-secret', securityToken: 'forged-token' }),
    );
    expect((await refusal(ramAttestor.attest(tokenOf(await signed({ credential: forged })), context()))).message).toMatch(
      /HTTP 404 InvalidAccessKeyId.NotFound/,
    );

    const key = sts.issueRoleKey({ accountId: instance.accountId, roleName: 'app-role', instanceId: instance.instanceId });
    const revokedCredential = new Credential(
      new CredentialConfig({ type: 'sts', accessKeyId: key.accessKeyId, accessKeySecret: key.accessKeySecret, securityToken: key.securityToken }),
    );
    const revokedRequest = await signed({ credential: revokedCredential });
    sts.revoke(key.accessKeyId);
    expect((await refusal(ramAttestor.attest(tokenOf(revokedRequest), context()))).oauthError).toBe('invalid_grant');

    const expired = sts.issueRoleKey({ accountId: instance.accountId, roleName: 'app-role', instanceId: instance.instanceId }, 0);
    const expiredCredential = new Credential(
      new CredentialConfig({ type: 'sts', accessKeyId: expired.accessKeyId, accessKeySecret: expired.accessKeySecret, securityToken: expired.securityToken }),
    );
    expect((await refusal(ramAttestor.attest(tokenOf(await signed({ credential: expiredCredential })), context()))).message).toMatch(
      /HTTP 400 InvalidSecurityToken.Expired/,
    );

    const user = sts.issueUserKey(instance.accountId, 'deployer');
    const userCredential = new Credential(new CredentialConfig({ type: 'access_key', accessKeyId: user.accessKeyId, accessKeySecret: user.accessKeySecret }));
    const err = await refusal(ramAttestor.attest(tokenOf(await signed({ credential: userCredential })), context()));
    expect(err.message).toMatch(/identity of type RAMUser; only RAM-role \(AssumedRoleUser\)/);
  });

  it("takes no instance id from a role session that is not an instance's", async () => {
    const key = sts.issueRoleKey({ accountId: instance.accountId, roleName: 'app-role', sessionName: 'deploy-job' });
    const cred = new Credential(
      new CredentialConfig({ type: 'sts', accessKeyId: key.accessKeyId, accessKeySecret: key.accessKeySecret, securityToken: key.securityToken }),
    );
    const identity = await ramAttestor.attest(tokenOf(await signed({ credential: cred })), context());
    expect(identity.instanceId).toBeUndefined();
    expect(identity.attributes).toMatchObject({ 'session-name': 'deploy-job' });
    expect(identity.attributes['instance-id-source']).toBeUndefined();
  });

  it("maps STS failures: 5xx, redirects (never followed), oversized answers, timeouts, the caller's deadline", async () => {
    const trap = await canary();
    try {
      sts.fault({ kind: 'status', status: 503, code: 'ServiceUnavailable' });
      expect((await refusal(ramAttestor.attest(tokenOf(await signed()), context()))).oauthError).toBe('temporarily_unavailable');
      sts.fault({ kind: 'redirect', location: trap.url });
      expect((await refusal(ramAttestor.attest(tokenOf(await signed()), context()))).message).toMatch(/HTTP 302/);
      expect(trap.hits()).toBe(0);
      sts.fault({ kind: 'huge' });
      expect((await refusal(ramAttestor.attest(tokenOf(await signed()), context()))).message).toMatch(/more than 16384 bytes/);
      const quick = new AlibabaRamRoleAttestor({ extraStsEndpoints: [sts.url], timeoutMs: 200 });
      const slow = await signed();
      sts.fault({ kind: 'delay', ms: 1000 });
      expect((await refusal(quick.attest(tokenOf(slow), context()))).message).toMatch(/no answer within 200 ms/);
      const caller = new AbortController();
      const late = await signed();
      sts.fault({ kind: 'delay', ms: 1000 });
      setTimeout(() => caller.abort(), 100);
      const aborted = await refusal(ramAttestor.attest(tokenOf(late), context({ signal: caller.signal })));
      expect(aborted).toMatchObject({ oauthError: 'temporarily_unavailable' });
      expect(aborted.message).toMatch(/deadline passed/);
      // Unreachable STS.
      const dead = new AlibabaRamRoleAttestor({ extraStsEndpoints: ['http://127.0.0.1:1/'], timeoutMs: 1000 });
      expect((await refusal(dead.attest(tokenOf(await signed({ stsUrl: 'http://127.0.0.1:1/' })), context()))).oauthError).toBe('temporarily_unavailable');
      // An identity answer that is not an assumed role's ARN.
      sts.fault({ kind: 'identity', body: { IdentityType: 'AssumedRoleUser', Arn: 'acs:ram::123:role/x' } });
      expect((await refusal(ramAttestor.attest(tokenOf(await signed()), context()))).message).toMatch(/not acs:ram::<account>:assumed-role/);
    } finally {
      await trap.close();
      // The two delayed requests above are answered (and recorded) a second after their callers
      // gave up: let them finish here, or on a busy machine they land in a later test's count.
      await sts.idle();
    }
  });

  it('refuses configurations it cannot use', () => {
    expect(() => new AlibabaRamRoleAttestor({ extraStsEndpoints: ['http://sts.internal.example/'] })).toThrow(/https \(plain http only to a loopback/);
    expect(() => new AlibabaRamRoleAttestor({ extraStsEndpoints: ['https://sts.internal.example/path'] })).toThrow(/bare origin/);
    expect(() => new AlibabaRamRoleAttestor({ maxAgeSeconds: 7200 })).toThrow(/maxAgeSeconds/);
  });
});

describe('AlibabaEcsTokenSource → IssuerClient → crosscred issuer', () => {
  let issuer: RunningIssuer;
  let issuerUrl: string;
  let dir: string;
  let client: IssuerClient;
  const sources: AlibabaEcsTokenSource[] = [];

  async function startAlibabaIssuer(accounts: string[], clock = systemClock): Promise<{ issuer: RunningIssuer; url: string }> {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const key = await makeKey(dir, `key-${port}.pem`);
    const configObject = baseConfig(url, [{ file: key.file, active: true }], {
      attestors: { alibabaEcsIdentity: { signingCertificateFiles: [ca.signerCertPath] }, alibabaRamRole: { extraStsEndpoints: [sts.url] } },
      policy: {
        alibabaEcsIdentity: { accounts, regions: [instance.regionId], instanceIds: ['*'], sessionTags: { zone: 'attribute:zone-id' }, transitiveTagKeys: [] },
        alibabaRamRole: { accounts, roles: [instance.roleName!] }, // role kinds take no instanceIds (issue #11 item 8)
      },
      rateLimit: { burst: 100, perMinute: 600 },
    });
    const configPath = join(dir, `issuer-${port}.yaml`);
    const config = configFrom(configObject, configPath);
    const attestors = new Map<SubjectTokenType, Attestor>([
      [SUBJECT_TOKEN_TYPES.alibabaEcsIdentity, new AlibabaEcsIdentityAttestor({ signingCertificatesPem: [ca.signerCertPem] })],
      [SUBJECT_TOKEN_TYPES.alibabaRamRole, new AlibabaRamRoleAttestor({ extraStsEndpoints: [sts.url], timeoutMs: 3000 })],
    ]);
    const running = await startIssuer(config, { logger: memoryLogger('debug').logger, clock, createAttestors: async () => attestors });
    return { issuer: running, url };
  }

  function source(options: Partial<AlibabaEcsTokenSourceOptions> & Pick<AlibabaEcsTokenSourceOptions, 'attestation'>): AlibabaEcsTokenSource {
    const created = new AlibabaEcsTokenSource({ issuer: client, issuerUrl, metadataUrl: metadata.url, stsUrl: sts.url, clock: systemClock, ...options });
    sources.push(created);
    return created;
  }

  async function failure(promise: Promise<unknown>, code: string): Promise<CrosscredError> {
    try {
      await promise;
    } catch (err) {
      expect(err).toBeInstanceOf(CrosscredError);
      expect((err as CrosscredError).code).toBe(code);
      descriptions.push((err as Error).message);
      return err as CrosscredError;
    }
    throw new Error('a token was returned');
  }

  beforeAll(async () => {
    dir = await tempDir();
    ({ issuer, url: issuerUrl } = await startAlibabaIssuer([instance.accountId]));
    client = new IssuerClient({ issuerUrl, connectTimeoutMs: 2000, responseTimeoutMs: 5000 });
  });

  afterAll(async () => {
    await Promise.all(sources.map((s) => s.close()));
    await client?.close();
    await issuer?.close();
    const { rm } = await import('node:fs/promises');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('warns once per source, never fails, when the metadata server also answers GETs without a token (HttpTokens=optional)', async () => {
    const warnings: SourceWarning[] = [];
    const onWarning = (warning: SourceWarning) => warnings.push(warning);
    metadata.requireToken = false;
    try {
      const identity = source({ attestation: 'ecs-identity', onWarning });
      const before = metadata.records.length;
      await identity.getToken();
      identity.invalidate();
      await identity.getToken();
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ code: 'ALIBABA_METADATA_TOKENS_OPTIONAL' });
      expect(warnings[0]!.message).toContain('HttpTokens=optional');
      expect(warnings[0]!.fix).toContain(
        `aliyun ecs ModifyInstanceMetadataOptions --RegionId <region> --InstanceId ${instance.instanceId} --HttpTokens required`,
      );
      // Two attestations, one probe: the only token-less read.
      const tokenless = metadata.records.slice(before).filter((r) => r.token === 'none' && r.method === 'GET');
      expect(tokenless.map((r) => r.path)).toEqual(['/latest/meta-data/instance-id']);
      await source({ attestation: 'ram-role', onWarning }).getToken();
      expect(warnings).toHaveLength(2);
      metadata.requireToken = true;
      await source({ attestation: 'ecs-identity', onWarning }).getToken();
      expect(warnings).toHaveLength(2);
    } finally {
      metadata.requireToken = true;
    }
  });

  it('ecs-identity: a JWT for alibaba-ecs:<account>:<region>:<instance>, from token-mode metadata reads', async () => {
    const before = metadata.records.length;
    const token = await source({ attestation: 'ecs-identity' }).getToken();
    const claims = decodeJwt(token.token);
    expect(claims).toMatchObject({
      iss: issuerUrl,
      sub: `alibaba-ecs:${instance.accountId}:${instance.regionId}:${instance.instanceId}`,
      aud: 'sts.amazonaws.com',
    });
    expect(token.claims.sub).toBe(claims.sub);
    // The earlier of exp and (request time + expires_in): at most the JWT's exp, within a second or two of it.
    expect(token.expiresAtWall).toBeLessThanOrEqual((claims.exp as number) * 1000);
    expect(token.expiresAtWall).toBeGreaterThan((claims.exp as number) * 1000 - 2000);
    const reads = metadata.records.slice(before);
    expect(reads.map((r) => `${r.method} ${r.path} ${r.token}`)).toEqual([
      // The one token-less probe of a new source (HttpTokens=required here: refused, no warning).
      'GET /latest/meta-data/instance-id none',
      'PUT /latest/api/token none',
      'GET /latest/dynamic/instance-identity/document valid',
      'GET /latest/dynamic/instance-identity/pkcs7 valid',
    ]);
    const audience = JSON.parse(new URLSearchParams(reads[3]!.query).get('audience')!) as { aud: string; signingTime: number };
    expect(audience.aud).toBe(issuerUrl);
    expect(Math.abs(audience.signingTime * 1000 - Date.now())).toBeLessThan(10_000);
  });

  it('ram-role: a JWT for alibaba-ram:<account>:role/<role>, signed by the official SDK and confirmed by STS', async () => {
    const before = sts.records.length;
    const token = await source({ attestation: 'ram-role' }).getToken();
    expect(decodeJwt(token.token)).toMatchObject({ iss: issuerUrl, sub: `alibaba-ram:${instance.accountId}:role/${instance.roleName}` });
    expect(sts.records.slice(before).map((r) => r.outcome)).toEqual(['ok']);
    expect(sts.records.at(-1)!.headers[BINDING_HEADERS.alibaba]).toBe(issuerUrl);
  });

  it('keeps the JWT, shares one attestation among concurrent callers, and attests again after invalidate()', async () => {
    const s = source({ attestation: 'ecs-identity' });
    const pkcs7Reads = () => metadata.records.filter((r) => r.path.endsWith('/pkcs7')).length;
    const before = pkcs7Reads();
    const tokens = await Promise.all([1, 2, 3, 4, 5].map(() => s.getToken()));
    expect(new Set(tokens.map((t) => t.token)).size).toBe(1);
    expect(pkcs7Reads()).toBe(before + 1);
    expect((await s.getToken()).token).toBe(tokens[0]!.token);
    expect(pkcs7Reads()).toBe(before + 1);
    s.invalidate();
    const renewed = await s.getToken();
    expect(renewed.token).not.toBe(tokens[0]!.token);
    expect(pkcs7Reads()).toBe(before + 2);
  });

  it("renews at 80% of the JWT's lifetime, and keeps the old JWT while a renewal fails", async () => {
    const clock = new FakeClock(Date.now());
    const own = await startAlibabaIssuer([instance.accountId], clock);
    const ownClient = new IssuerClient({ issuerUrl: own.url, connectTimeoutMs: 2000, responseTimeoutMs: 5000 });
    let issuerOpen = true;
    try {
      const s = source({ attestation: 'ecs-identity', issuer: ownClient, issuerUrl: own.url, clock });
      const first = await s.getToken();
      const lifetime = first.expiresAtWall - clock.wallNow();
      expect(lifetime).toBeGreaterThan(3599_000);
      expect(lifetime).toBeLessThanOrEqual(3600_000);
      await clock.advance(0.79 * lifetime);
      expect((await s.getToken()).token).toBe(first.token);
      // Past 80%: a new attestation (the issuer shares the fake clock, so it is fresh there too).
      await clock.advance(0.02 * lifetime);
      const second = await s.getToken();
      expect(second.token).not.toBe(first.token);
      // Past 80% of the second JWT, with the issuer gone: the second JWT, still valid for ~11 min, is kept.
      await clock.advance(0.81 * lifetime);
      await own.issuer.close();
      issuerOpen = false;
      expect((await s.getToken()).token).toBe(second.token);
      // Once it is too close to its expiry, the failure is reported instead.
      await clock.advance(0.18 * lifetime);
      await failure(s.getToken(), 'CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    } finally {
      await ownClient.close();
      if (issuerOpen) await own.issuer.close();
    }
  });

  it('refuses, with no token: an account not in policy, a replayed attestation, an attestation for another issuer', async () => {
    // Another account's instance, signed by the same (real) Alibaba certificate.
    const stranger = await FakeEcsMetadata.start({
      instance: sampleInstance({ accountId: '5128828231865463', instanceId: 'i-rj978rorvlg76urhqh7q' }),
      signer: ca,
      requireToken: true,
    });
    try {
      const err = await failure(source({ attestation: 'ecs-identity', metadataUrl: stranger.url }).getToken(), 'CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
      expect(err.message).toMatch(/HTTP 400 \(invalid_grant: .*account 5128828231865463 may not get/);
    } finally {
      await stranger.close();
    }
    // The same attestation presented twice to the issuer (dated a minute back, so that it is not
    // one of the attestations the sources above made in the last few seconds).
    const attestation = await identityAttestation(audienceFor(issuerUrl, Math.floor(Date.now() / 1000) - 60));
    const token = tokenOf(attestation);
    await client.exchange(SUBJECT_TOKEN_TYPES.alibabaEcsIdentity, token);
    const replay = await failure(client.exchange(SUBJECT_TOKEN_TYPES.alibabaEcsIdentity, token), 'CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(replay.message).toMatch(/invalid_grant: .*(replay|already|seen)/i);
    // A source configured for another issuer URL produces attestations this issuer refuses.
    const misbound = await failure(
      source({ attestation: 'ecs-identity', issuerUrl: 'https://elsewhere.example' }).getToken(),
      'CROSSCRED_ERR_TOKEN_REQUEST_FAILED',
    );
    expect(misbound.message).toMatch(/not to this issuer/);
    const misboundRam = await failure(
      source({ attestation: 'ram-role', issuerUrl: 'https://elsewhere.example' }).getToken(),
      'CROSSCRED_ERR_TOKEN_REQUEST_FAILED',
    );
    expect(misboundRam.message).toMatch(/not to this issuer/);
  });

  it('reports metadata problems as ALIBABA_METADATA_FAILED, without secrets', async () => {
    const noRole = await FakeEcsMetadata.start({ instance: sampleInstance({ roleName: undefined }), signer: ca, sts, requireToken: true });
    try {
      const err = await failure(source({ attestation: 'ram-role', metadataUrl: noRole.url }).getToken(), 'CROSSCRED_ERR_ALIBABA_METADATA_FAILED');
      expect(err.message).toMatch(/RAM-role credentials/);
      const wrongRole = await failure(
        source({ attestation: 'ram-role', metadataUrl: metadata.url, roleName: 'not-attached' }).getToken(),
        'CROSSCRED_ERR_ALIBABA_METADATA_FAILED',
      );
      expect(wrongRole.message).toMatch(/RAM-role credentials/);
    } finally {
      await noRole.close();
    }
    const unreachable = await failure(
      source({ attestation: 'ecs-identity', metadataUrl: 'http://127.0.0.1:1' }).getToken(),
      'CROSSCRED_ERR_ALIBABA_METADATA_FAILED',
    );
    expect(unreachable.message).toMatch(/could not get a metadata session token .*ECONNREFUSED/);
    expect(unreachable.describe()).toMatch(/100\.100\.100\.200/);
  });
});
