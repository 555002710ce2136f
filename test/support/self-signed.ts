import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A self-signed P-256 certificate and its key, written by openssl for one day: a test's own TLS
 * server (a private STS, the issuer, a listener) or a CA that signed nothing (a wrong-CA case).
 * `ips` become subjectAltName IP entries, which Node checks for a loopback URL.
 */
export async function selfSignedCert(options: {
  readonly cn: string;
  readonly keyFile: string;
  readonly certFile: string;
  readonly ips?: readonly string[];
  readonly dnsNames?: readonly string[];
}): Promise<void> {
  const names = [...(options.ips ?? []).map((ip) => `IP:${ip}`), ...(options.dnsNames ?? []).map((n) => `DNS:${n}`)];
  const san = names.length ? ['-addext', `subjectAltName=${names.join(',')}`] : [];
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=${options.cn}`,
    ...san,
    '-keyout',
    options.keyFile,
    '-out',
    options.certFile,
  ]);
}
