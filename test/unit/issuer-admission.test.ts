import { describe, expect, it } from 'vitest';
import { clientAddressKey } from '../../src/core/client-address.js';
import { AttestationPools, ClientAdmission, poolSizes, STS_CONNECTIONS_PER_ATTESTOR } from '../../src/issuer/admission.js';

describe('client admission (issue #11 item 1)', () => {
  it('allows a burst per address, then refuses with Retry-After until the bucket refills; other addresses are unaffected', () => {
    const admission = new ClientAdmission({ burst: 3, perSecond: 0.5, maxClients: 100 });
    for (let i = 0; i < 3; i++) expect(admission.admit('192.0.2.1', 0)).toEqual({ admitted: true });
    expect(admission.admit('192.0.2.1', 0)).toEqual({ admitted: false, retryAfterSeconds: 2 });
    expect(admission.admit('192.0.2.2', 0)).toEqual({ admitted: true });
    expect(admission.admit('192.0.2.1', 2_000)).toEqual({ admitted: true });
  });

  it('keys IPv4-mapped addresses as IPv4 and IPv6 by its /64', () => {
    expect(clientAddressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(clientAddressKey('2001:db8:1:2::5')).toBe(clientAddressKey('2001:0db8:0001:0002:ffff:1:2:3'));
    expect(clientAddressKey('2001:db8:1:2::5')).not.toBe(clientAddressKey('2001:db8:1:3::5'));
    expect(clientAddressKey(undefined)).toBe('unknown');
  });

  it('tracks at most maxClients addresses, forgetting the least recently seen', () => {
    const admission = new ClientAdmission({ burst: 1, perSecond: 0.001, maxClients: 100 });
    expect(admission.admit('10.0.0.0', 0).admitted).toBe(true);
    for (let i = 1; i <= 1_000; i++) {
      admission.admit('10.0.0.0', i);
      admission.admit(`10.0.${i >> 8}.${i & 255}`, i);
      expect(admission.size).toBeLessThanOrEqual(100);
    }
    // Seen all along, so never forgotten: still refused.
    expect(admission.admit('10.0.0.0', 1_001).admitted).toBe(false);
  });
});

describe('attestation pools (issue #11 item 1)', () => {
  it("bounds each kind by itself; a network-bound kind's pool is its STS connections", () => {
    const sizes = poolSizes(64);
    expect(sizes).toEqual({ alibabaEcsIdentity: 64, alibabaRamRole: STS_CONNECTIONS_PER_ATTESTOR, tencentCamRole: STS_CONNECTIONS_PER_ATTESTOR });
    expect(poolSizes(2).tencentCamRole).toBe(2);
    const pools = new AttestationPools(sizes);
    const held = Array.from({ length: STS_CONNECTIONS_PER_ATTESTOR }, () => pools.tryAcquire('tencentCamRole'));
    expect(held.every((r) => r !== undefined)).toBe(true);
    expect(pools.tryAcquire('tencentCamRole')).toBeUndefined();
    const ecs = pools.tryAcquire('alibabaEcsIdentity');
    expect(ecs).toBeDefined();
    expect(pools.inFlight).toBe(STS_CONNECTIONS_PER_ATTESTOR + 1);
    held[0]!();
    held[0]!();
    expect(pools.inFlightOf('tencentCamRole')).toBe(STS_CONNECTIONS_PER_ATTESTOR - 1);
    expect(pools.tryAcquire('tencentCamRole')).toBeDefined();
    expect(pools.tryAcquire('tencentCamRole')).toBeUndefined();
  });
});
