import { describe, expect, it } from 'vitest';
import { exactClientAddressKey } from '../../src/core/client-address.js';
import { TokenBuckets } from '../../src/util/token-bucket.js';

describe('TokenBuckets', () => {
  it('allows a burst, then one token per 1/rate seconds, with the wait in Retry-After', () => {
    const buckets = new TokenBuckets({ ratePerSecond: 5, burst: 20, maxKeys: 10 });
    for (let i = 0; i < 20; i++) expect(buckets.take('a', 0)).toEqual({ allowed: true });
    expect(buckets.take('a', 0)).toEqual({ allowed: false, retryAfterSeconds: 1 });
    expect(buckets.take('a', 199).allowed).toBe(false);
    expect(buckets.take('a', 200).allowed).toBe(true);
    expect(buckets.take('a', 200).allowed).toBe(false);
    // Refills to the burst, never beyond.
    for (let i = 0; i < 20; i++) expect(buckets.take('a', 60_000).allowed).toBe(true);
    expect(buckets.take('a', 60_000).allowed).toBe(false);
  });

  it('says how long to wait at slow rates', () => {
    const buckets = new TokenBuckets({ ratePerSecond: 0.1, burst: 1, maxKeys: 10 });
    expect(buckets.take('a', 0).allowed).toBe(true);
    expect(buckets.take('a', 0)).toEqual({ allowed: false, retryAfterSeconds: 10 });
    expect(buckets.take('a', 5_000)).toEqual({ allowed: false, retryAfterSeconds: 5 });
  });

  it('keeps one bucket per key, and at most maxKeys keys (the oldest forgotten gets a full bucket)', () => {
    const buckets = new TokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys: 2 });
    expect(buckets.take('a', 0).allowed).toBe(true);
    expect(buckets.take('a', 0).allowed).toBe(false);
    expect(buckets.take('b', 0).allowed).toBe(true);
    expect(buckets.take('c', 0).allowed).toBe(true);
    expect(buckets.size).toBe(2);
    expect(buckets.take('a', 0).allowed).toBe(true);
  });

  it('never mints tokens from a clock that goes back', () => {
    const buckets = new TokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys: 2 });
    expect(buckets.take('a', 10_000).allowed).toBe(true);
    expect(buckets.take('a', 0).allowed).toBe(false);
    expect(buckets.take('a', 10_999).allowed).toBe(false);
    expect(buckets.take('a', 11_000).allowed).toBe(true);
  });

  it('refuses settings that could never admit anything', () => {
    expect(() => new TokenBuckets({ ratePerSecond: 0, burst: 1, maxKeys: 1 })).toThrow(RangeError);
    expect(() => new TokenBuckets({ ratePerSecond: 1, burst: 0, maxKeys: 1 })).toThrow(RangeError);
  });
});

describe('exactClientAddressKey', () => {
  it('counts two IPv6 addresses of one /64 apart, and one address the same however it is spelled', () => {
    const a = exactClientAddressKey('2001:db8:1:2::10');
    const b = exactClientAddressKey('2001:db8:1:2::11');
    expect(a).not.toBe(b);
    expect(exactClientAddressKey('2001:0db8:0001:0002:0000:0000:0000:0010')).toBe(a);
    expect(exactClientAddressKey('2001:DB8:1:2:0:0:0:10%eth0')).toBe(a);
    const buckets = new TokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys: 10 });
    expect(buckets.take(a, 0).allowed).toBe(true);
    expect(buckets.take(a, 0).allowed).toBe(false);
    expect(buckets.take(b, 0).allowed).toBe(true);
  });

  it('takes IPv4 and IPv4-mapped addresses as themselves', () => {
    expect(exactClientAddressKey('127.0.0.9')).toBe('127.0.0.9');
    expect(exactClientAddressKey('::ffff:127.0.0.9')).toBe('127.0.0.9');
    expect(exactClientAddressKey(undefined)).toBe('unknown');
  });
});
