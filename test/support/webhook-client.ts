import { request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';

/** One HTTPS request to the webhook; resolves with the status, headers and body text. */
export function postToWebhook(
  port: number,
  ca: Buffer | string,
  body: string | Buffer,
  options: { path?: string; method?: string; contentType?: string; declaredLength?: number } = {},
): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  return new Promise((resolve, reject) => {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: options.path ?? '/mutate?timeout=5s',
        method: options.method ?? 'POST',
        ca,
        agent: false,
        headers: {
          'content-type': options.contentType ?? 'application/json',
          'content-length': String(options.declaredLength ?? bytes.length),
          accept: 'application/json, */*',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    // The server may answer (413) and close before the whole body is sent: that answer is what counts.
    req.on('error', reject);
    req.end(bytes);
  });
}

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is shown. */
export function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}
