import type { IncomingMessage } from 'node:http';

export type BodyResult = { readonly body: Buffer } | { readonly failure: 'too-large' | 'timeout' | 'aborted' };

/**
 * Reads a request body, at most `maxBytes`, within `timeoutMs`, for the handlers that read one (the
 * issuer's token endpoint, the webhook's /mutate). A body beyond the limit, a stalled one and an
 * aborted one each end the read with their own failure; the request is paused, not drained.
 */
export function readBody(req: IncomingMessage, maxBytes: number, timeoutMs: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (result: BodyResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('aborted', onAbort);
      if (!('body' in result)) req.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) return finish({ failure: 'too-large' });
      chunks.push(chunk);
    };
    const onEnd = () => finish({ body: Buffer.concat(chunks, size) });
    const onAbort = () => finish({ failure: 'aborted' });
    const timer = setTimeout(() => finish({ failure: 'timeout' }), timeoutMs);
    timer.unref();
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onAbort);
    req.once('aborted', onAbort);
  });
}
