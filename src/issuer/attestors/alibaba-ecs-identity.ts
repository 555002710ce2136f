import { createHash, webcrypto } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { CrosscredError } from '../../core/errors.js';
import { type AlibabaEcsIdentityAttestation, type EcsAttestationAudience, SUBJECT_TOKEN_TYPES } from '../../protocol/issuer-token-exchange.js';
import { checkDerShape, type DerLimits, DerShapeError } from '../../util/der-shape.js';
import { type AttestationContext, AttestationError, type AttestedIdentity, type Attestor } from '../attestor.js';

/**
 * Verifies an Alibaba ECS instance identity attestation: the instance identity document and the
 * PKCS#7 signature the metadata server made over it and an audience naming this issuer and a
 * signing time (docs/research/vm-attestation.md §1.4).
 *
 * Trust comes from the configured Alibaba signing certificate(s) only: certificates carried in the
 * message are ignored, the one SignerInfo must name a pinned certificate (issuer and serial, or
 * key identifier) and verify with its key. There is no chain and no date check on that
 * certificate, as in Alibaba's own recipe (`openssl smime -verify … -certfile AliyunPubkey
 * -noverify`): the operator's configuration is the trust anchor.
 *
 * Both PKCS#7 layouts are accepted, since which one Alibaba produces is not confirmed (§9):
 * - attached: the content inside the message is what was signed, and is authoritative; it must
 *   carry the same `audience` the caller says it asked for;
 * - detached: the signed bytes are the document with `,"audience":<audience as a JSON string>`
 *   inserted before its final `}` (ecsSignedContent), which is how Alibaba documents checking it.
 * Either way the claims are read from the signed bytes, never from the caller's copy.
 */

export interface AlibabaEcsIdentityAttestorOptions {
  /** PEM text of Alibaba's instance identity signing certificate(s); each string may hold several. */
  readonly signingCertificatesPem: readonly string[];
  /** How old (by its signingTime) an attestation may be, in seconds. Default 300. */
  readonly maxAgeSeconds?: number;
  /** How far in the future its signingTime may be (clock skew between instance and issuer), in seconds. Default 30. */
  readonly futureSkewSeconds?: number;
}

const DEFAULT_MAX_AGE_SECONDS = 300;
const DEFAULT_FUTURE_SKEW_SECONDS = 30;
/** The replay window stays well inside a day (the seen-set's bound), whatever is configured. */
const MAX_CONFIGURABLE_AGE_SECONDS = 3600;

/** A subject token holds a document (< 1 KiB), a PKCS#7 (a few KiB) and an audience: 64 KiB is generous. */
const MAX_SUBJECT_TOKEN_CHARS = 64 * 1024;
const MAX_DOCUMENT_CHARS = 8 * 1024;
/**
 * The PKCS#7 as the metadata server serves it: base64 in lines. What Alibaba sends is about 1 KiB
 * of base64 (the one-line document of about 450 bytes, signed with RSA-2048, no certificate: 766
 * bytes of DER in the fake metadata server, test/support/fake-alibaba-cloud.ts, which signs as
 * Alibaba documents, docs/research/vm-attestation.md §1.4). The largest layout the research leaves
 * open, attached content with the signing certificate inside, signed with RSA-4096, is 3,033 bytes
 * of DER (4,044 characters). 8 KiB of base64 (about 6 KiB of DER) leaves room for a second
 * certificate, and nothing else.
 */
const MAX_PKCS7_CHARS = 8 * 1024;
/**
 * Limits on the PKCS#7's ASN.1, checked by a walk over its headers before asn1js builds anything.
 * The layouts above have 84 to 181 elements (a certificate is about 95), nested at most 12 deep.
 * 512 elements leave room for two or three larger certificates; 32 levels for their extensions.
 * What is left for a hostile message that passes is what asn1js and pkijs spend on 512 elements
 * they cannot make a SignedData of: a few ms of CPU, against 70 ms for 23 KiB before this walk.
 */
const PKCS7_DER_LIMITS: DerLimits = { maxNodes: 512, maxDepth: 32 };
/** The audience is `{"aud":"<issuer URL>","signingTime":<s>}`; a URL longer than this is not ours. */
const MAX_AUDIENCE_CHARS = 1024;

const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_DATA = '1.2.840.113549.1.7.1';
const OID_CONTENT_TYPE_ATTRIBUTE = '1.2.840.113549.1.9.3';
/** SHA-256/384/512. SHA-1 and MD5 are refused: a collision could let other signed bytes stand in. */
const ALLOWED_DIGESTS: Readonly<Record<string, string>> = {
  '2.16.840.1.101.3.4.2.1': 'SHA-256',
  '2.16.840.1.101.3.4.2.2': 'SHA-384',
  '2.16.840.1.101.3.4.2.3': 'SHA-512',
};
/** RSA PKCS#1 v1.5 (bare or with SHA-2) and ECDSA with SHA-2. */
const ALLOWED_SIGNATURES: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.1': 'RSA',
  '1.2.840.113549.1.1.11': 'RSA-SHA256',
  '1.2.840.113549.1.1.12': 'RSA-SHA384',
  '1.2.840.113549.1.1.13': 'RSA-SHA512',
  '1.2.840.10045.4.3.2': 'ECDSA-SHA256',
  '1.2.840.10045.4.3.3': 'ECDSA-SHA384',
  '1.2.840.10045.4.3.4': 'ECDSA-SHA512',
};

/** Ids that become claims and `sub` must look like Alibaba's. */
const ACCOUNT_ID = /^[0-9]{1,32}$/;
const INSTANCE_ID = /^i-[a-z0-9]{1,64}$/;
const REGION_ID = /^[a-z0-9-]{1,64}$/;
/** Further document fields passed on as attributes (printable ASCII only; anything else is dropped). */
const ATTRIBUTE_FIELDS = ['zone-id', 'instance-type', 'image-id', 'serial-number', 'private-ipv4', 'mac'] as const;
const ATTRIBUTE_VALUE = /^[\x21-\x7e]{1,256}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The bytes the metadata server signs in the detached layout: `document` with
 * `,"audience":<audience as a JSON string>` inserted before its final `}`. Trailing white space
 * after that `}` (a line break from the server) is not part of the signed text. Throws when
 * `document` is not a non-empty JSON object's text.
 */
export function ecsSignedContent(document: string, audience: string): Buffer {
  const trimmed = document.replace(/[ \t\r\n]+$/, '');
  if (!trimmed.startsWith('{') || !trimmed.endsWith('}') || /^\{[ \t\r\n]*\}$/.test(trimmed)) {
    throw new AttestationError('invalid_request', 'the instance identity document is not a non-empty JSON object');
  }
  return Buffer.from(`${trimmed.slice(0, -1)},"audience":${JSON.stringify(audience)}}`, 'utf8');
}

export class AlibabaEcsIdentityAttestor implements Attestor {
  readonly subjectTokenType = SUBJECT_TOKEN_TYPES.alibabaEcsIdentity;
  readonly #pinned: readonly pkijs.Certificate[];
  readonly #maxAgeMs: number;
  readonly #futureSkewMs: number;
  // Node's WebCrypto, passed explicitly rather than installed as pkijs's global engine.
  readonly #crypto = new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto } as unknown as ConstructorParameters<typeof pkijs.CryptoEngine>[0]);

  constructor(options: AlibabaEcsIdentityAttestorOptions) {
    const invalid = (text: string) => new CrosscredError('CONFIG_INVALID', `Alibaba ECS identity attestor: ${text}`);
    const maxAge = options.maxAgeSeconds ?? DEFAULT_MAX_AGE_SECONDS;
    const skew = options.futureSkewSeconds ?? DEFAULT_FUTURE_SKEW_SECONDS;
    if (!Number.isInteger(maxAge) || maxAge < 1 || maxAge > MAX_CONFIGURABLE_AGE_SECONDS) {
      throw invalid(`maxAgeSeconds must be a whole number from 1 to ${MAX_CONFIGURABLE_AGE_SECONDS}, not ${maxAge}`);
    }
    if (!Number.isInteger(skew) || skew < 0 || skew > MAX_CONFIGURABLE_AGE_SECONDS) {
      throw invalid(`futureSkewSeconds must be a whole number from 0 to ${MAX_CONFIGURABLE_AGE_SECONDS}, not ${skew}`);
    }
    this.#maxAgeMs = maxAge * 1000;
    this.#futureSkewMs = skew * 1000;
    const pinned: pkijs.Certificate[] = [];
    for (const [index, pem] of options.signingCertificatesPem.entries()) {
      const blocks = [...pem.matchAll(/-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/g)];
      if (blocks.length === 0) throw invalid(`signing certificate ${index + 1} holds no PEM certificate`);
      for (const block of blocks) {
        try {
          pinned.push(pkijs.Certificate.fromBER(Buffer.from(block[1]!.replace(/\s+/g, ''), 'base64')));
        } catch {
          throw invalid(`signing certificate ${index + 1} holds a PEM block that is not an X.509 certificate`);
        }
      }
    }
    if (pinned.length === 0) throw invalid("at least one signing certificate (Alibaba's instance identity certificate, PEM) is needed");
    this.#pinned = pinned;
  }

  async attest(subjectToken: string, context: AttestationContext): Promise<AttestedIdentity> {
    const attestation = decodeAttestation(subjectToken);
    // Cheap checks on the caller's copy first; the same checks run on the signed audience below.
    this.#checkAudience(attestation.audience, context);
    const der = decodePkcs7(attestation.pkcs7);
    const signedData = parseSignedData(der);
    const attached = attachedContent(signedData);
    const signed = attached ?? ecsSignedContent(attestation.document, attestation.audience);
    await this.#verifySignature(signedData, attached === undefined ? signed : undefined);

    const signedDocument = parseJsonObject(signed.toString('utf8'));
    if (!signedDocument) throw new AttestationError('invalid_grant', 'the signed instance identity content is not a JSON object');
    const signedAudience = signedDocument['audience'];
    if (typeof signedAudience !== 'string') {
      throw new AttestationError(
        'invalid_grant',
        'the signed instance identity content has no audience: it was fetched without ?audience= and is not bound to this issuer',
      );
    }
    if (signedAudience !== attestation.audience) {
      throw new AttestationError('invalid_grant', 'the audience inside the signed content differs from the audience the attestation names');
    }
    const audience = this.#checkAudience(signedAudience, context);
    const identity = identityFromDocument(signedDocument);
    return {
      kind: SUBJECT_TOKEN_TYPES.alibabaEcsIdentity,
      cloud: 'alibaba',
      ...identity,
      // The signed bytes, not the DER: the same signature re-encoded (certificates added, other
      // BER lengths, unsigned attributes) would otherwise count as a new attestation.
      replayKey: `alibaba-ecs-identity:${createHash('sha256').update(signed).digest('base64url')}`,
      replayUntilWall: audience.signingTime * 1000 + this.#maxAgeMs,
    };
  }

  /** Checks that `audience` names this issuer and a signing time inside the window; returns it parsed. */
  #checkAudience(audienceText: string, context: AttestationContext): EcsAttestationAudience {
    const parsed = parseJsonObject(audienceText);
    const keys = parsed ? Object.keys(parsed).sort().join(',') : '';
    const aud = parsed?.['aud'];
    const signingTime = parsed?.['signingTime'];
    if (keys !== 'aud,signingTime' || typeof aud !== 'string' || typeof signingTime !== 'number' || !Number.isSafeInteger(signingTime) || signingTime <= 0) {
      throw new AttestationError('invalid_request', 'the audience is not the JSON object {"aud":"<issuer URL>","signingTime":<Unix seconds>}');
    }
    if (aud !== context.issuerUrl) {
      throw new AttestationError(
        'invalid_grant',
        `the attestation is bound to the audience ${JSON.stringify(printable(aud))}, not to this issuer ${context.issuerUrl}`,
      );
    }
    const signedAtWall = signingTime * 1000;
    const age = context.nowWall - signedAtWall;
    if (age > this.#maxAgeMs) {
      throw new AttestationError(
        'invalid_grant',
        `the attestation was signed ${Math.round(age / 1000)} s ago; at most ${this.#maxAgeMs / 1000} s are accepted (fetch a fresh one; check the instance's clock)`,
      );
    }
    if (-age > this.#futureSkewMs) {
      throw new AttestationError(
        'invalid_grant',
        `the attestation is dated ${Math.round(-age / 1000)} s in the future; at most ${this.#futureSkewMs / 1000} s of clock skew are accepted (check the instance's and the issuer's clocks)`,
      );
    }
    return { aud, signingTime };
  }

  async #verifySignature(signedData: pkijs.SignedData, detached: Buffer | undefined): Promise<void> {
    if (signedData.signerInfos.length !== 1) {
      throw new AttestationError('invalid_grant', `the PKCS#7 has ${signedData.signerInfos.length} signers; exactly one (Alibaba's) is expected`);
    }
    const signer = signedData.signerInfos[0]!;
    const digest = ALLOWED_DIGESTS[signer.digestAlgorithm.algorithmId];
    if (!digest)
      throw new AttestationError(
        'invalid_grant',
        `the PKCS#7 uses the digest algorithm ${signer.digestAlgorithm.algorithmId}; only SHA-256, SHA-384 and SHA-512 are accepted`,
      );
    const signature = ALLOWED_SIGNATURES[signer.signatureAlgorithm.algorithmId];
    if (!signature)
      throw new AttestationError(
        'invalid_grant',
        `the PKCS#7 uses the signature algorithm ${signer.signatureAlgorithm.algorithmId}; only RSA PKCS#1 v1.5 and ECDSA with SHA-2 are accepted`,
      );
    if (signer.signedAttrs) {
      const contentTypes = signer.signedAttrs.attributes.filter((a) => a.type === OID_CONTENT_TYPE_ATTRIBUTE);
      const value = contentTypes[0]?.values[0];
      if (contentTypes.length !== 1 || !(value instanceof asn1js.ObjectIdentifier) || value.valueBlock.toString() !== OID_DATA) {
        throw new AttestationError('invalid_grant', 'the PKCS#7 signed attributes do not declare plain data as the content type');
      }
    }
    const certificate = await this.#pinnedCertificateFor(signer);
    if (!certificate) {
      throw new AttestationError(
        'invalid_grant',
        'the PKCS#7 was not signed with a configured Alibaba signing certificate (its signer names another certificate)',
      );
    }
    // Only the pinned certificate is offered to the verifier; whatever the message carries is dropped.
    signedData.certificates = [certificate];
    let verified = false;
    try {
      const result = await signedData.verify(
        { signer: 0, ...(detached ? { data: toArrayBuffer(detached) } : {}), checkChain: false, extendedMode: true },
        this.#crypto,
      );
      verified = result.signatureVerified === true;
    } catch {
      verified = false;
    }
    if (!verified) {
      throw new AttestationError(
        'invalid_grant',
        'the PKCS#7 signature does not verify against the configured Alibaba signing certificate over this document and audience (tampered, or signed by someone else)',
      );
    }
  }

  async #pinnedCertificateFor(signer: pkijs.SignerInfo): Promise<pkijs.Certificate | undefined> {
    const sid: unknown = signer.sid;
    if (sid instanceof pkijs.IssuerAndSerialNumber) {
      return this.#pinned.find((c) => c.issuer.isEqual(sid.issuer) && c.serialNumber.isEqual(sid.serialNumber));
    }
    // [0] SubjectKeyIdentifier: pkijs matches it against SHA-1 of the certificate's public key.
    const block = sid as {
      idBlock?: { isConstructed?: boolean };
      valueBlock?: { value?: { valueBlock: { valueHexView: Uint8Array } }[]; valueHexView?: Uint8Array };
    };
    const keyId = block.idBlock?.isConstructed ? block.valueBlock?.value?.[0]?.valueBlock.valueHexView : block.valueBlock?.valueHexView;
    if (!keyId) return undefined;
    for (const certificate of this.#pinned) {
      const digest = createHash('sha1').update(certificate.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView).digest();
      if (Buffer.compare(digest, Buffer.from(keyId)) === 0) return certificate;
    }
    return undefined;
  }
}

function decodeAttestation(subjectToken: string): AlibabaEcsIdentityAttestation {
  const malformed = (why: string) => new AttestationError('invalid_request', `the subject token is not an Alibaba ECS identity attestation: ${why}`);
  if (subjectToken.length > MAX_SUBJECT_TOKEN_CHARS) throw malformed(`it is longer than ${MAX_SUBJECT_TOKEN_CHARS} characters`);
  if (!/^[A-Za-z0-9_-]+$/.test(subjectToken)) throw malformed('it is not base64url');
  const value = parseJsonObject(Buffer.from(subjectToken, 'base64url').toString('utf8'));
  if (!value) throw malformed('it does not decode to a JSON object');
  const { document, pkcs7, audience } = value;
  if (typeof document !== 'string' || typeof pkcs7 !== 'string' || typeof audience !== 'string')
    throw malformed('"document", "pkcs7" and "audience" must be strings');
  if (document.length > MAX_DOCUMENT_CHARS) throw malformed(`the document is longer than ${MAX_DOCUMENT_CHARS} characters`);
  if (pkcs7.length > MAX_PKCS7_CHARS) throw malformed(`the PKCS#7 is longer than ${MAX_PKCS7_CHARS} characters`);
  if (audience.length > MAX_AUDIENCE_CHARS) throw malformed(`the audience is longer than ${MAX_AUDIENCE_CHARS} characters`);
  return { document, pkcs7, audience };
}

/** Base64 DER as the metadata server returns it: no PEM armour, possibly with line breaks. */
function decodePkcs7(text: string): Buffer {
  const compact = text.replace(/[ \t\r\n]+/g, '');
  if (compact.length === 0 || compact.length % 4 !== 0 || !BASE64.test(compact)) {
    throw new AttestationError('invalid_request', 'the PKCS#7 is not base64 (the body of /latest/dynamic/instance-identity/pkcs7)');
  }
  return Buffer.from(compact, 'base64');
}

/**
 * Refuses, cheaply, a PKCS#7 that is not DER or is larger in elements or nesting than any Alibaba
 * sends, before asn1js spends about 3.6 µs on each element it builds. The reason word (such as
 * `too-many-nodes`) is in the description.
 */
function checkPkcs7Shape(der: Buffer): void {
  try {
    checkDerShape(der, PKCS7_DER_LIMITS);
  } catch (err) {
    if (!(err instanceof DerShapeError)) throw err;
    throw new AttestationError(
      'invalid_request',
      `the PKCS#7 is refused before parsing (pkcs7-${err.reason}): ${err.message}; Alibaba's is DER, within ${PKCS7_DER_LIMITS.maxNodes} elements`,
    );
  }
}

function parseSignedData(der: Buffer): pkijs.SignedData {
  checkPkcs7Shape(der);
  try {
    // The same limits again in asn1js itself, as a second line behind the walk.
    const asn1 = asn1js.fromBER(toArrayBuffer(der), PKCS7_DER_LIMITS);
    if (asn1.offset !== der.length) throw new Error('not one ASN.1 element');
    const contentInfo = new pkijs.ContentInfo({ schema: asn1.result });
    if (contentInfo.contentType !== OID_SIGNED_DATA) throw new Error('not SignedData');
    const signedData = new pkijs.SignedData({ schema: contentInfo.content });
    if (signedData.encapContentInfo.eContentType !== OID_DATA) throw new Error('not data');
    return signedData;
  } catch {
    throw new AttestationError('invalid_request', 'the PKCS#7 is not a CMS SignedData over plain data');
  }
}

/** The content carried inside the message, or undefined when the signature is detached. */
function attachedContent(signedData: pkijs.SignedData): Buffer | undefined {
  const content = signedData.encapContentInfo.eContent;
  if (!content) return undefined;
  if (!(content instanceof asn1js.OctetString)) throw new AttestationError('invalid_request', 'the PKCS#7 carries content that is not an OCTET STRING');
  // DER only (checkPkcs7Shape): the OCTET STRING is primitive, its bytes in one piece.
  return Buffer.from(content.getValue());
}

function identityFromDocument(document: Record<string, unknown>): Pick<AttestedIdentity, 'accountId' | 'region' | 'instanceId' | 'attributes'> {
  const owner = document['owner-account-id'];
  const legacy = document['account-id'];
  if (owner !== undefined && legacy !== undefined && owner !== legacy) {
    throw new AttestationError('invalid_grant', 'the signed document names two different accounts (owner-account-id and account-id)');
  }
  const accountId = owner ?? legacy;
  const instanceId = document['instance-id'];
  const region = document['region-id'];
  if (typeof accountId !== 'string' || !ACCOUNT_ID.test(accountId))
    throw new AttestationError('invalid_grant', 'the signed document has no valid owner-account-id');
  if (typeof instanceId !== 'string' || !INSTANCE_ID.test(instanceId))
    throw new AttestationError('invalid_grant', 'the signed document has no valid instance-id');
  if (typeof region !== 'string' || !REGION_ID.test(region)) throw new AttestationError('invalid_grant', 'the signed document has no valid region-id');
  const attributes: Record<string, string> = {};
  for (const field of ATTRIBUTE_FIELDS) {
    // Older documents call the address private-ip.
    const value = document[field] ?? (field === 'private-ipv4' ? document['private-ip'] : undefined);
    if (typeof value === 'string' && ATTRIBUTE_VALUE.test(value)) attributes[field] = value;
  }
  return { accountId, region, instanceId, attributes };
}

function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** A value from the caller, made safe to show: printable ASCII, at most 100 characters. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 100);
}
