import { describe, expect, it } from 'vitest';
import { endpointUrlProblem, isHostLocalAddress, isLoopbackHost } from '../../src/core/url-checks.js';

// One copy of these checks serves config (plain http to loopback, listen addresses) and the issuer
// (its public URL and listen address). The two copies they replace disagreed: one lower-cased the
// host, the other accepted the long form of ::1. This one does both, and nothing more.
describe('isLoopbackHost', () => {
  it.each(['localhost', 'LOCALHOST', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', '0::1', '::ffff:127.0.0.1', '[::FFFF:7F00:1]'])(
    '%s is loopback',
    (host) => {
      expect(isLoopbackHost(host)).toBe(true);
    },
  );

  it.each(['localhost.example.com', '128.0.0.1', '0.0.0.0', '::', '::2', '::ffff:10.0.0.1', '169.254.169.254', 'example.com', '', '[', '127.0.0.1.nip.io'])(
    '%s is not loopback',
    (host) => {
      expect(isLoopbackHost(host)).toBe(false);
    },
  );
});

describe('isHostLocalAddress', () => {
  it("takes loopback, IPv4 link-local, IPv6 link-local, the AWS IPv6 metadata addresses and Alibaba's metadata address", () => {
    for (const host of [
      '127.0.0.1',
      'LocalHost',
      '169.254.169.254',
      '169.254.170.23',
      'fe80::1',
      'FEBF::1',
      'fd00:ec2::254',
      'fd00:ec2::23',
      '100.100.100.200',
    ]) {
      expect(isHostLocalAddress(host), host).toBe(true);
    }
  });

  it('refuses wildcards and anything other machines reach', () => {
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '100.100.100.201', '100.64.0.1', 'fe8::1', 'fec0::1', 'fd00:ec2::1', 'example.com']) {
      expect(isHostLocalAddress(host), host).toBe(false);
    }
  });
});

describe('endpointUrlProblem', () => {
  it('allows https anywhere and plain http to loopback only', () => {
    expect(endpointUrlProblem('https://issuer.example.com/token')).toBeUndefined();
    expect(endpointUrlProblem('http://127.0.0.1:8470/token')).toBeUndefined();
    expect(endpointUrlProblem('http://[::1]:8470/token')).toBeUndefined();
    expect(endpointUrlProblem('http://issuer.example.com/token')).toMatch(/https/);
    expect(endpointUrlProblem('https://issuer.example.com/token?x=1')).toMatch(/query/);
    expect(endpointUrlProblem('not a url')).toBe('is not a URL');
  });
});
