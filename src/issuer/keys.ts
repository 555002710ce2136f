import { createPrivateKey, createPublicKey, generateKeyPair as generateNodeKeyPair, type KeyObject, randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { link, open, stat, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { CrosscredError } from '../core/errors.js';
import { privateFileProblem, readRegularFileChecked } from '../util/read-regular-file.js';

/**
 * The issuer's signing keys: loaded from files, one `active` key that signs, the others only
 * published in the JWKS (the next key before it signs, the previous one while tokens it signed
 * may still be presented). See docs/issuer.md, "Discovery and key rotation".
 */

export const SIGNING_ALGORITHMS = ['ES256', 'RS256'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/** RSA moduli below this are refused (RFC 7518 §3.3 asks for 2048 at least). */
export const MIN_RSA_BITS = 2048;
/** Above this an RSA key is someone's mistake, and every signature costs tens of milliseconds. */
export const MAX_RSA_BITS = 8192;
/** What keygen makes for RS256: stronger than the minimum at a signing cost that stays small. */
export const DEFAULT_RSA_BITS = 3072;
/** AWS IAM accepts at most 100 RSA and 100 EC keys in a provider's JWKS. */
export const MAX_KEYS_PER_TYPE = 100;
/** A key file is a few kilobytes at most; a bigger file is not a key. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

export interface KeyFileConfig {
  readonly file: string;
  /** The one key that signs. The others are published only. */
  readonly active: boolean;
}

/** A public JWK as published: `kty` and its members, plus `kid`, `alg` and `use`. */
export type PublishedJwk = JWK & { readonly kid: string; readonly alg: SigningAlgorithm; readonly use: 'sig' };

export interface IssuerKey {
  /** RFC 7638 thumbprint (SHA-256, base64url) of the public key. */
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly file: string;
  readonly publicJwk: PublishedJwk;
  /** Present for the active key only (published-only keys may be public-key files). */
  readonly privateKey?: KeyObject;
}

export interface IssuerKeySet {
  readonly active: IssuerKey & { readonly privateKey: KeyObject };
  /** Every key in the JWKS, the active one included, in configuration order. */
  readonly published: readonly IssuerKey[];
}

/**
 * Loads every configured key and checks the set: exactly one active key, no key twice, at most
 * 100 keys of each type. Every problem found is reported at once.
 */
export async function loadKeySet(configs: readonly KeyFileConfig[]): Promise<IssuerKeySet> {
  const problems: string[] = [];
  const loaded: IssuerKey[] = [];
  let active: (IssuerKey & { privateKey: KeyObject }) | undefined;
  const activeCount = configs.filter((c) => c.active).length;
  if (activeCount !== 1) problems.push(`exactly one key must be active (it signs); ${activeCount} are`);
  for (const config of configs) {
    try {
      const key = await loadKeyFile(config.file, { requirePrivate: config.active });
      const twin = loaded.find((k) => k.kid === key.kid);
      if (twin) {
        problems.push(`${config.file} holds the same key as ${twin.file} (kid ${key.kid})`);
        continue;
      }
      loaded.push(key);
      if (config.active && key.privateKey) active = key as IssuerKey & { privateKey: KeyObject };
    } catch (err) {
      if (!(err instanceof CrosscredError)) throw err;
      problems.push(err.message);
    }
  }
  for (const kty of ['RSA', 'EC']) {
    const count = loaded.filter((k) => k.publicJwk.kty === kty).length;
    if (count > MAX_KEYS_PER_TYPE) problems.push(`${count} ${kty} keys are configured; AWS IAM accepts at most ${MAX_KEYS_PER_TYPE} per type in a JWKS`);
  }
  if (problems.length > 0 || !active)
    throw new CrosscredError('ISSUER_KEY_INVALID', problems.length === 1 ? problems[0]! : `signing keys:\n  - ${problems.join('\n  - ')}`);
  return { active, published: loaded };
}

/**
 * Reads one key file: a PKCS#8 PEM private key, an SPKI PEM public key, or a JWK (JSON), private
 * or public. A file holding a private key must belong to this user (or root) and be closed to
 * group and others, as OpenSSH requires of its keys.
 */
export async function loadKeyFile(path: string, options: { requirePrivate: boolean }): Promise<IssuerKey> {
  let data: Buffer | undefined;
  let info: Stats;
  try {
    // The ownership and mode checked below are fstat's of the descriptor these bytes came from.
    ({ bytes: data, info } = await readRegularFileChecked(path, MAX_KEY_FILE_BYTES));
  } catch (err) {
    throw new CrosscredError('ISSUER_KEY_INVALID', `cannot read key file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (data === undefined) throw new CrosscredError('ISSUER_KEY_INVALID', `key file ${path} is larger than ${MAX_KEY_FILE_BYTES} bytes`);
  const text = data.toString('utf8').trim();
  const parsed = parseKeyText(path, text);
  if (parsed.privateKey) checkPrivateKeyFile(path, info);
  else if (options.requirePrivate) throw new CrosscredError('ISSUER_KEY_INVALID', `${path} holds a public key only; the active key must be a private key`);
  const publicKey = parsed.privateKey ? createPublicKey(parsed.privateKey) : parsed.publicKey!;
  const alg = algorithmOf(path, publicKey);
  if (parsed.declaredAlg !== undefined && parsed.declaredAlg !== alg) {
    throw new CrosscredError(
      'ISSUER_KEY_INVALID',
      `${path} declares alg ${JSON.stringify(parsed.declaredAlg.slice(0, 20))}; crosscred signs with ES256 (P-256 keys) or RS256 (RSA keys) only`,
    );
  }
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  const publicJwk = { ...publicMembers(jwk), kid, alg, use: 'sig' } as PublishedJwk;
  return parsed.privateKey ? { kid, alg, file: path, publicJwk, privateKey: parsed.privateKey } : { kid, alg, file: path, publicJwk };
}

interface ParsedKey {
  readonly privateKey?: KeyObject;
  readonly publicKey?: KeyObject;
  /** A JWK's own `alg`, checked against the key type. */
  readonly declaredAlg?: string;
}

function parseKeyText(path: string, text: string): ParsedKey {
  const refuse = (why: string) => new CrosscredError('ISSUER_KEY_INVALID', `${path}: ${why}`);
  if (text.startsWith('{')) {
    let jwk: JWK & { d?: string };
    try {
      jwk = JSON.parse(text) as JWK & { d?: string };
    } catch {
      throw refuse('is neither PEM nor valid JSON (JWK)');
    }
    if (typeof jwk !== 'object' || jwk === null || typeof jwk.kty !== 'string') throw refuse('is JSON without a JWK "kty"');
    if (jwk.use !== undefined && jwk.use !== 'sig') throw refuse(`is a JWK for use ${JSON.stringify(String(jwk.use).slice(0, 10))}, not "sig"`);
    const declaredAlg = typeof jwk.alg === 'string' ? jwk.alg : undefined;
    try {
      return typeof jwk.d === 'string'
        ? { privateKey: createPrivateKey({ key: jwk as never, format: 'jwk' }), ...(declaredAlg ? { declaredAlg } : {}) }
        : { publicKey: createPublicKey({ key: jwk as never, format: 'jwk' }), ...(declaredAlg ? { declaredAlg } : {}) };
    } catch {
      throw refuse('is not a usable JWK');
    }
  }
  if (text.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----'))
    throw refuse('is an encrypted key; crosscred needs it unencrypted, protected by its file mode (openssl pkcs8 -topk8 -nocrypt)');
  if (/-----BEGIN (?:EC|RSA) PRIVATE KEY-----/.test(text))
    throw refuse('is a SEC1/PKCS#1 key; convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW');
  const blocks = text.match(/-----BEGIN [A-Z ]+-----/g) ?? [];
  if (blocks.length !== 1) throw refuse(blocks.length === 0 ? 'holds no PEM block or JWK' : 'holds more than one PEM block; use one file per key');
  try {
    if (blocks[0] === '-----BEGIN PRIVATE KEY-----') return { privateKey: createPrivateKey({ key: text, format: 'pem' }) };
    if (blocks[0] === '-----BEGIN PUBLIC KEY-----') return { publicKey: createPublicKey({ key: text, format: 'pem' }) };
  } catch {
    throw refuse('holds a PEM block that is not a usable key');
  }
  throw refuse(`holds a ${blocks[0]!.slice(11, -5)}, not a PKCS#8 private key or an SPKI public key`);
}

function algorithmOf(path: string, key: KeyObject): SigningAlgorithm {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (details.namedCurve === 'prime256v1') return 'ES256';
    throw new CrosscredError('ISSUER_KEY_INVALID', `${path} is an EC key on ${details.namedCurve ?? 'an unknown curve'}; ES256 needs P-256 (prime256v1)`);
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw new CrosscredError('ISSUER_KEY_INVALID', `${path} is a ${bits}-bit RSA key; RS256 needs at least ${MIN_RSA_BITS} bits`);
    if (bits > MAX_RSA_BITS) throw new CrosscredError('ISSUER_KEY_INVALID', `${path} is a ${bits}-bit RSA key; at most ${MAX_RSA_BITS} bits are accepted`);
    return 'RS256';
  }
  throw new CrosscredError(
    'ISSUER_KEY_INVALID',
    `${path} is a ${key.asymmetricKeyType ?? 'unknown'} key; crosscred signs with ES256 (P-256) or RS256 (RSA) only, which AWS IAM accepts`,
  );
}

/** The members of a public JWK (RFC 7518 §6.2.1, §6.3.1), nothing else. */
function publicMembers(jwk: JWK): JWK {
  return jwk.kty === 'EC' ? { kty: 'EC', crv: jwk.crv!, x: jwk.x!, y: jwk.y! } : { kty: 'RSA', n: jwk.n!, e: jwk.e! };
}

/**
 * A private key file is trusted only if nobody but its owner (this process's user, or root) could
 * have written it or can read it: any group or other permission is refused.
 */
function checkPrivateKeyFile(path: string, info: Stats): void {
  const problem = privateFileProblem(path, info);
  if (problem !== undefined) throw new CrosscredError('ISSUER_KEY_INVALID', problem);
}

const generateKeyPairAsync = promisify(generateNodeKeyPair);

/**
 * `crosscred issuer keygen`: a new private key, written as PKCS#8 PEM with mode 0600. The file
 * is written privately and hard-linked into place, which fails if the name exists: it appears
 * complete or not at all, and an existing key is never overwritten.
 */
export async function generateKeyFile(alg: SigningAlgorithm, path: string, rsaBits = DEFAULT_RSA_BITS): Promise<{ kid: string; publicJwk: PublishedJwk }> {
  if (alg === 'RS256' && (!Number.isInteger(rsaBits) || rsaBits < MIN_RSA_BITS || rsaBits > MAX_RSA_BITS || rsaBits % 8 !== 0)) {
    throw new CrosscredError('CONFIG_INVALID', `--bits must be a multiple of 8 from ${MIN_RSA_BITS} to ${MAX_RSA_BITS}`);
  }
  const exists = await stat(path).then(
    () => true,
    () => false,
  );
  if (exists) throw new CrosscredError('ISSUER_KEY_FILE_EXISTS', `${path} already exists`);
  const pair =
    alg === 'ES256'
      ? await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' })
      : await generateKeyPairAsync('rsa', { modulusLength: rsaBits, publicExponent: 0x10001 });
  const pem = pair.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await handle.writeFile(pem);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(tmp, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new CrosscredError('ISSUER_KEY_FILE_EXISTS', `${path} already exists`);
    throw new CrosscredError('ISSUER_KEY_INVALID', `cannot write ${path} (${code ?? 'error'})`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  const key = await loadKeyFile(path, { requirePrivate: true });
  return { kid: key.kid, publicJwk: key.publicJwk };
}
