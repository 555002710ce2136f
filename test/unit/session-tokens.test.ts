import { describe, expect, it } from 'vitest';
import { MAX_TTL_SECONDS, parseTtlHeader, SessionTokenIssuer } from '../../src/serve/session-tokens.js';
import { FakeClock } from '../support/fake-clock.js';

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** 'cc1' + base64url of 8 bytes of expiry and 24 bytes of MAC, unpadded. */
const TOKEN_LENGTH = 3 + 43;

function setup() {
  const clock = new FakeClock();
  return { clock, issuer: new SessionTokenIssuer(clock) };
}

function replaceAt(s: string, i: number, c: string): string {
  return s.slice(0, i) + c + s.slice(i + 1);
}

describe('SessionTokenIssuer', () => {
  it('verifies a token it issued', () => {
    const { issuer } = setup();
    const token = issuer.issue(60);
    expect(token).toMatch(/^cc1[A-Za-z0-9_-]{43}$/);
    expect(token).toHaveLength(TOKEN_LENGTH);
    expect(issuer.verify(token)).toBe(true);
  });

  it('issues a different token for a different expiry', async () => {
    const { clock, issuer } = setup();
    const a = issuer.issue(60);
    await clock.advance(1);
    expect(issuer.issue(60)).not.toBe(a);
    expect(issuer.issue(61)).not.toBe(a);
  });

  it('accepts a token until its TTL has passed, then refuses it', async () => {
    const { clock, issuer } = setup();
    const token = issuer.issue(10);
    await clock.advance(10_000 - 1);
    expect(issuer.verify(token)).toBe(true);
    await clock.advance(1);
    expect(issuer.verify(token)).toBe(false);
  });

  it('keeps a maximum-TTL token valid for six hours', async () => {
    const { clock, issuer } = setup();
    const token = issuer.issue(MAX_TTL_SECONDS);
    await clock.advance(6 * 3_600_000 - 1);
    expect(issuer.verify(token)).toBe(true);
    await clock.advance(1);
    expect(issuer.verify(token)).toBe(false);
  });

  it('ignores wall-clock jumps: expiry is monotonic', () => {
    const { clock, issuer } = setup();
    const token = issuer.issue(10);
    clock.jumpWall(24 * 3_600_000);
    expect(issuer.verify(token)).toBe(true);
    clock.jumpWall(-48 * 3_600_000);
    expect(issuer.verify(token)).toBe(true);
  });

  it("refuses another issuer's token, even one issued at the same instant with the same TTL", () => {
    const clock = new FakeClock();
    const mine = new SessionTokenIssuer(clock);
    const theirs = new SessionTokenIssuer(clock);
    expect(mine.verify(theirs.issue(60))).toBe(false);
    expect(theirs.verify(mine.issue(60))).toBe(false);
  });

  it('refuses every single-character change that alters the encoded bytes', () => {
    const { issuer } = setup();
    const token = issuer.issue(21_600);
    const original = Buffer.from(token.slice(3), 'base64url');
    let tried = 0;
    for (let i = 0; i < token.length; i++) {
      for (const c of BASE64URL) {
        if (c === token[i]) continue;
        const tampered = replaceAt(token, i, c);
        // The last character carries 2 padding bits; changes confined to them are covered below.
        if (i >= 3 && Buffer.from(tampered.slice(3), 'base64url').equals(original)) continue;
        tried++;
        expect(issuer.verify(tampered), `position ${i} -> ${c}`).toBe(false);
      }
    }
    expect(tried).toBeGreaterThan(TOKEN_LENGTH * 60);
  });

  it('refuses a token whose expiry bytes were raised to outlive the TTL', async () => {
    const { clock, issuer } = setup();
    const token = issuer.issue(1);
    const payload = Buffer.from(token.slice(3), 'base64url');
    payload.writeBigUInt64BE(payload.readBigUInt64BE(0) + 3_600_000n, 0);
    const extended = `cc1${payload.toString('base64url')}`;
    await clock.advance(2_000);
    expect(issuer.verify(extended)).toBe(false);
  });

  // Node's base64url decoder ignores the 2 unused low bits of the last character and accepts '+'
  // and '/'; verify accepts only the spelling it issued.
  it('refuses non-canonical spellings of an issued token', () => {
    const { issuer } = setup();
    const token = issuer.issue(60);
    const lastIndex = BASE64URL.indexOf(token.at(-1)!);
    // Flip the lowest bit of the last character: it is one of the 2 padding bits.
    const paddingFlip = replaceAt(token, token.length - 1, BASE64URL[lastIndex ^ 1]!);
    expect(paddingFlip).not.toBe(token);
    expect(issuer.verify(paddingFlip)).toBe(false);

    const aliased = `cc1${token.slice(3).replace(/-/g, '+').replace(/_/g, '/')}`;
    if (aliased !== token) expect(issuer.verify(aliased)).toBe(false);
  });

  it('refuses undefined, wrong lengths, a wrong prefix and non-base64url text', () => {
    const { issuer } = setup();
    const token = issuer.issue(60);
    const candidates = [
      undefined,
      '',
      'cc1',
      token.slice(0, -1),
      `${token}A`,
      token.slice(3),
      `cc2${token.slice(3)}`,
      `CC1${token.slice(3)}`,
      `cc1${'!'.repeat(43)}`,
      `cc1${' '.repeat(43)}`,
      'x'.repeat(10_000),
    ];
    for (const candidate of candidates) expect(issuer.verify(candidate), String(candidate).slice(0, 50)).toBe(false);
  });
});

describe('SessionTokenIssuer memo of recent tokens', () => {
  it('still verifies a token by its MAC once a flood of PUTs has pushed it out of the memo, and refuses it once expired', async () => {
    const { clock, issuer } = setup();
    const early = issuer.issue(60);
    for (let i = 0; i < 5_000; i++) issuer.issue(1 + (i % 600));
    expect(issuer.verify(early)).toBe(true);
    // Now in the memo again; expiry is still judged there.
    await clock.advance(60_000);
    expect(issuer.verify(early)).toBe(false);
  });

  it('refuses a remembered token after its TTL, and forgeries never enter the memo', async () => {
    const { clock, issuer } = setup();
    const token = issuer.issue(1);
    expect(issuer.verify(token)).toBe(true);
    await clock.advance(1_000);
    expect(issuer.verify(token)).toBe(false);
    const forged = replaceAt(token, TOKEN_LENGTH - 2, token[TOKEN_LENGTH - 2] === 'A' ? 'B' : 'A');
    expect(issuer.verify(forged)).toBe(false);
    expect(issuer.verify(forged)).toBe(false);
  });
});

describe('parseTtlHeader', () => {
  it('accepts whole seconds from 1 to 21600', () => {
    expect(parseTtlHeader('1')).toBe(1);
    expect(parseTtlHeader('60')).toBe(60);
    expect(parseTtlHeader('21600')).toBe(21_600);
  });

  it("accepts leading zeros within five digits, as the code's /^[0-9]{1,5}$/ allows", () => {
    // Observed behaviour, not a spec requirement: '007' is read as 7 seconds.
    expect(parseTtlHeader('007')).toBe(7);
    expect(parseTtlHeader('00001')).toBe(1);
    expect(parseTtlHeader('000001')).toBeUndefined();
  });

  it('refuses values out of range', () => {
    for (const v of ['0', '00000', '21601', '99999', '100000']) expect(parseTtlHeader(v), v).toBeUndefined();
  });

  it('refuses anything that is not exactly a decimal integer', () => {
    for (const v of ['-1', '+5', '1e3', ' 5', '5 ', '5\n', '', '1.0', '0x10', '５', 'sixty']) expect(parseTtlHeader(v), JSON.stringify(v)).toBeUndefined();
  });

  it('refuses a repeated header (array) and a missing one', () => {
    expect(parseTtlHeader(['60'])).toBeUndefined();
    expect(parseTtlHeader(['60', '60'])).toBeUndefined();
    expect(parseTtlHeader(undefined)).toBeUndefined();
  });
});
