import { describe, expect, it } from 'vitest';
import { escapePointerSegment, pointer } from '../../src/webhook/json-patch.js';
import { resolveWebhookConfig, WEBHOOK_DEFAULTS } from '../../src/webhook/webhook-config.js';

describe('resolveWebhookConfig', () => {
  it('gives the documented defaults, the API URL from the in-cluster variables', () => {
    const config = resolveWebhookConfig({}, { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' });
    expect(config).toEqual({
      listen: { host: '0.0.0.0', port: 8443 },
      adminListen: { host: '0.0.0.0', port: 8081 },
      tls: { certFile: '/etc/crosscred/webhook-tls/tls.crt', keyFile: '/etc/crosscred/webhook-tls/tls.key' },
      defaultMode: 'agent',
      ipFamily: 'ipv4',
      kube: {
        apiServer: 'https://[fd00::1]:443',
        tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
        caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
      },
      serviceAccountCacheSeconds: WEBHOOK_DEFAULTS.serviceAccountCacheSeconds,
      logLevel: 'info',
    });
    expect(Object.isFrozen(config.kube)).toBe(true);
  });

  it('takes CROSSCRED_LOG_LEVEL when no flag says, and every AWS region name the other commands take', () => {
    const env = { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443', CROSSCRED_LOG_LEVEL: 'debug' };
    expect(resolveWebhookConfig({}, env).logLevel).toBe('debug');
    expect(resolveWebhookConfig({ 'log-level': 'warn' }, env).logLevel).toBe('warn');
    for (const region of ['eu-west-1', 'us-gov-west-1', 'cn-north-1', 'eusc-de-east-1']) expect(resolveWebhookConfig({ region }, env).region).toBe(region);
  });

  it('names every bad flag at once', () => {
    expect(() =>
      resolveWebhookConfig(
        {
          listen: 'nowhere',
          'default-mode': 'magic',
          region: 'Europe',
          'ip-family': 'ipv5',
          'service-account-cache-seconds': '-1',
          'kube-api-url': 'http://api',
          'sidecar-image': 'bad image',
        },
        {},
      ),
    ).toThrow(
      /--listen: .*; --default-mode: must be one of agent, sidecar, web-identity; --ip-family: must be ipv4 or ipv6; --sidecar-image: is not an image reference; --region: .*; --service-account-cache-seconds: .*; --kube-api-url: must be a plain https:\/\/ URL/,
    );
    expect(() => resolveWebhookConfig({}, {})).toThrow(/--kube-api-url: not given, and KUBERNETES_SERVICE_HOST/);
  });
});

describe('JSON Pointer escaping (RFC 6901)', () => {
  it('writes "~" as ~0 and "/" as ~1, "~" first', () => {
    expect(escapePointerSegment('crosscred.io/injected')).toBe('crosscred.io~1injected');
    expect(escapePointerSegment('a~1/b')).toBe('a~01~1b');
    expect(pointer('metadata', 'annotations', 'example.com/x~y')).toBe('/metadata/annotations/example.com~1x~0y');
    expect(pointer('spec', 'containers', 0, 'env')).toBe('/spec/containers/0/env');
  });
});
