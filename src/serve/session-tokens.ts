import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../core/clock.js';

/** IMDSv2 accepts TTLs from 1 s to 6 h. */
export const MIN_TTL_SECONDS = 1;
export const MAX_TTL_SECONDS = 21_600;

/** A token: an 8-byte expiry and a 24-byte (192-bit) truncated HMAC-SHA256, base64url, after a version prefix. */
const EXPIRY_BYTES = 8;
const MAC_BYTES = 24;
const TOKEN_BYTES = EXPIRY_BYTES + MAC_BYTES;
const PREFIX = 'cc1';
/** Tokens remembered after issue or verification (about 100 bytes each). */
const MAX_RECENT_TOKENS = 4096;
/** base64url length of TOKEN_BYTES, plus the version prefix. */
const TOKEN_LENGTH = PREFIX.length + Math.ceil((TOKEN_BYTES * 4) / 3);

/**
 * IMDSv2 session tokens that hold no state: a token is its own expiry (monotonic ms) plus an
 * HMAC of it under a key made at start-up. Any number of PUTs costs bounded memory, verification is one
 * HMAC, and a restart (new key) invalidates every token, as a reboot does on EC2.
 *
 * One issuer per listener, so a token from one listener is worthless on another.
 */
export class SessionTokenIssuer {
  readonly #key = randomBytes(32);
  /**
   * Recently issued or verified tokens and their expiry, so the GETs that follow a PUT skip the
   * HMAC (about 10% of the IMDS sequence's time in the benchmark profile). Bounded: the oldest
   * entry goes first, and a token no longer here is simply verified by its MAC again.
   */
  readonly #recent = new Map<string, number>();

  constructor(private readonly clock: Clock) {}

  issue(ttlSeconds: number): string {
    const payload = Buffer.alloc(TOKEN_BYTES);
    const expiresMono = Math.ceil(this.clock.monotonicNow() + ttlSeconds * 1000);
    payload.writeBigUInt64BE(BigInt(expiresMono), 0);
    this.#mac(payload.subarray(0, EXPIRY_BYTES)).copy(payload, EXPIRY_BYTES);
    const token = PREFIX + payload.toString('base64url');
    this.#remember(token, expiresMono);
    return token;
  }

  /** True when `token` was issued here and has not expired. Constant time in the MAC. */
  verify(token: string | undefined): boolean {
    if (token === undefined) return false;
    const known = this.#recent.get(token);
    if (known !== undefined) return known > this.clock.monotonicNow();
    return this.#verifyMac(token);
  }

  #remember(token: string, expiresMono: number): void {
    if (this.#recent.size >= MAX_RECENT_TOKENS) this.#recent.delete(this.#recent.keys().next().value!);
    this.#recent.set(token, expiresMono);
  }

  #verifyMac(token: string): boolean {
    if (token.length !== TOKEN_LENGTH || !token.startsWith(PREFIX)) return false;
    const encoded = token.slice(PREFIX.length);
    const payload = Buffer.from(encoded, 'base64url');
    // Node's decoder also takes '+' and '/' and ignores stray low bits: accept only the one
    // spelling that was issued.
    if (payload.length !== TOKEN_BYTES || payload.toString('base64url') !== encoded) return false;
    const expected = this.#mac(payload.subarray(0, EXPIRY_BYTES));
    if (!timingSafeEqual(expected, payload.subarray(EXPIRY_BYTES))) return false;
    const expiresMono = Number(payload.readBigUInt64BE(0));
    if (expiresMono <= this.clock.monotonicNow()) return false;
    this.#remember(token, expiresMono);
    return true;
  }

  #mac(expiry: Buffer): Buffer {
    return createHmac('sha256', this.#key).update(expiry).digest().subarray(0, MAC_BYTES);
  }
}

/**
 * The TTL header's value as whole seconds, or undefined when it is missing or not exactly a
 * decimal integer within 1–21600 (no sign, no spaces, no exponent: `1e3`, ` 5`, `-1` are refused).
 */
export function parseTtlHeader(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^[0-9]{1,5}$/.test(value)) return undefined;
  const ttl = Number(value);
  return ttl >= MIN_TTL_SECONDS && ttl <= MAX_TTL_SECONDS ? ttl : undefined;
}
