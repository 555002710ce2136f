import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { HostGuard, hostOnly } from '../../src/http/host-guard.js';

describe('hostOnly', () => {
  it('strips the port and lower-cases', () => {
    expect(hostOnly('127.0.0.1:8170')).toBe('127.0.0.1');
    expect(hostOnly('LocalHost:80')).toBe('localhost');
    expect(hostOnly('Example.COM')).toBe('example.com');
  });

  it('strips the brackets and port of an IPv6 literal', () => {
    expect(hostOnly('[::1]:8170')).toBe('::1');
    expect(hostOnly('[FD00::2]')).toBe('fd00::2');
  });

  it('keeps an unbracketed IPv6 address whole rather than cutting at its first colon', () => {
    expect(hostOnly('::1')).toBe('::1');
    expect(hostOnly('fd00::2')).toBe('fd00::2');
  });

  it('leaves an unterminated bracket as it is', () => {
    expect(hostOnly('[::1')).toBe('[::1');
  });
});

describe('HostGuard on the name localhost', () => {
  it('also accepts the loopback addresses the name binds', () => {
    const guard = new HostGuard({ host: 'localhost', port: 8170 }, []);
    for (const host of ['localhost:8170', '127.0.0.1:8170', '[::1]:8170']) expect(guard.allows(host), host).toBe(true);
    expect(guard.allows('attacker.example')).toBe(false);
  });
});

describe('HostGuard on a loopback address', () => {
  const guard = new HostGuard({ host: '127.0.0.1', port: 8170 }, []);

  it('accepts the listen address with or without a port, and localhost', () => {
    for (const host of ['127.0.0.1', '127.0.0.1:8170', 'localhost', 'localhost:8170', 'LOCALHOST:8170']) expect(guard.allows(host), host).toBe(true);
  });

  it('accepts a request without a Host header (HTTP/1.0)', () => {
    expect(guard.allows(undefined)).toBe(true);
  });

  it('refuses a DNS-rebinding host name and look-alikes', () => {
    for (const host of [
      'attacker.example.com',
      'attacker.example.com:8170',
      '127.0.0.1.attacker.example',
      'localhost.attacker.example',
      '127.0.0.2',
      '',
      ':8170',
      'localhost.',
    ])
      expect(guard.allows(host), JSON.stringify(host)).toBe(false);
  });

  it('does not accept other local addresses it is not listening on', () => {
    expect(guard.allows('[::1]:8170')).toBe(false);
  });
});

describe('HostGuard on a link-local address', () => {
  const guard = new HostGuard({ host: '169.254.170.2', port: 80 }, []);

  it('accepts only that address, not localhost', () => {
    expect(guard.allows('169.254.170.2')).toBe(true);
    expect(guard.allows('169.254.170.2:80')).toBe(true);
    expect(guard.allows('localhost')).toBe(false);
    expect(guard.allows('127.0.0.1')).toBe(false);
  });
});

describe('HostGuard on IPv6 loopback', () => {
  const guard = new HostGuard({ host: '::1', port: 8170 }, []);

  it('accepts the bracketed address and localhost', () => {
    expect(guard.allows('[::1]:8170')).toBe(true);
    expect(guard.allows('[::1]')).toBe(true);
    expect(guard.allows('localhost:8170')).toBe(true);
    expect(guard.allows('127.0.0.1')).toBe(false);
  });
});

describe('HostGuard with configured names', () => {
  const guard = new HostGuard({ host: '10.0.0.5', port: 8170 }, ['Crosscred.Internal', '[FD00::9]']);

  it('accepts the names case-insensitively, with or without a port', () => {
    expect(guard.allows('crosscred.internal')).toBe(true);
    expect(guard.allows('CROSSCRED.INTERNAL:8170')).toBe(true);
    expect(guard.allows('[fd00::9]:8170')).toBe(true);
    expect(guard.allows('10.0.0.5:8170')).toBe(true);
  });

  it('still refuses names that are not configured', () => {
    expect(guard.allows('crosscred.internal.attacker.example')).toBe(false);
    expect(guard.allows('localhost')).toBe(false);
  });
});

describe('HostGuard on a wildcard address', () => {
  const local = Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((a) => a.address.toLowerCase().replace(/%.*$/, ''));

  for (const wildcard of ['0.0.0.0', '::']) {
    it(`accepts every address of this host and localhost when listening on ${wildcard}`, () => {
      const guard = new HostGuard({ host: wildcard, port: 8170 }, []);
      expect(local.length).toBeGreaterThan(0);
      for (const address of local) {
        const header = address.includes(':') ? `[${address}]:8170` : `${address}:8170`;
        expect(guard.allows(header), header).toBe(true);
      }
      expect(guard.allows('localhost')).toBe(true);
    });

    it(`still refuses foreign names when listening on ${wildcard}`, () => {
      const guard = new HostGuard({ host: wildcard, port: 8170 }, []);
      expect(guard.allows('attacker.example.com')).toBe(false);
      expect(guard.allows('0.0.0.0:8170')).toBe(false);
      expect(guard.allows('203.0.113.77')).toBe(false);
    });
  }
});
