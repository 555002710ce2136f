import type { Dispatcher } from 'undici';

/**
 * Reads an HTTP answer's body as UTF-8 text, up to `maxBytes`: `undefined` (and the rest of the
 * body discarded) when it is larger. Every answer from the other side of a network — STS, the
 * Kubernetes API, a metadata server, the issuer — is read through this, so none can fill memory.
 */
export async function readBoundedBody(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      body.destroy();
      return undefined;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** JSON.parse that answers `undefined` for text that is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** A plain JSON object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
