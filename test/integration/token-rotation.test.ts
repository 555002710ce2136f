import { open, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { CrosscredError } from '../../src/core/errors.js';
import { FileTokenSource } from '../../src/sources/file-token-source.js';
import { type Chain, startChain, startInProcess } from '../support/chain.js';

/**
 * The token file as kubelet and RRSA rotate it: replaced atomically (write beside, rename), or
 * rewritten in place (truncate, then write). A reader must see the old token, the new one, or a
 * retryable error, and never send STS a piece of a token.
 */
let chain: Chain;
beforeAll(async () => {
  chain = await startChain({ subject: 'system:serviceaccount:payments:*' });
});
afterAll(() => chain?.close());

describe('token file rotation while the daemon runs', () => {
  it('uses the new token after an atomic replace', async () => {
    const d = await startInProcess(chain);
    try {
      await d.daemon.firstFetch;
      expect(chain.sts.issued.at(-1)!.subject).toBe('system:serviceaccount:payments:api');
      await chain.writeToken({ sub: 'system:serviceaccount:payments:api-rotated' });
      await d.daemon.roles.get('app')!.cache.refreshNow();
      expect(chain.sts.issued.at(-1)!.subject).toBe('system:serviceaccount:payments:api-rotated');
    } finally {
      await d.close();
    }
  });

  it('sends nothing while the file is truncated mid-rewrite, keeps serving, and recovers once it is whole', async () => {
    const d = await startInProcess(chain);
    try {
      await d.daemon.firstFetch;
      const cache = d.daemon.roles.get('app')!.cache;
      const callsBefore = chain.sts.calls;
      const token = await chain.issuer.mint({ sub: 'system:serviceaccount:payments:api', aud: 'sts.amazonaws.com', ttlSeconds: 3600 });
      // In place: truncate and write half, as a writer caught between its two write() calls.
      await writeFile(chain.tokenFile, token.slice(0, Math.floor(token.length / 2)));
      await cache.refreshNow();
      expect(chain.sts.calls).toBe(callsBefore);
      expect(cache.status()).toMatchObject({ ready: true, lastError: { kind: 'retryable', code: 'CROSSCRED_ERR_TOKEN_NOT_JWT' } });
      await writeFile(chain.tokenFile, token);
      await cache.refreshNow();
      expect(chain.sts.calls).toBe(callsBefore + 1);
      expect(cache.status()).toMatchObject({ ready: true, lastError: null });
    } finally {
      await d.close();
    }
  });
});

describe('a reader racing an in-place writer', () => {
  it('only ever sees a whole token or a retryable error, over 300 rewrites', async () => {
    const tokens = [
      await chain.issuer.mint({ sub: 'system:serviceaccount:payments:a', aud: 'sts.amazonaws.com', ttlSeconds: 3600 }),
      await chain.issuer.mint({ sub: 'system:serviceaccount:payments:b', aud: 'sts.amazonaws.com', ttlSeconds: 3600 }),
    ];
    const source = new FileTokenSource(chain.tokenFile, systemClock);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 300; i++) {
        const t = tokens[i % 2]!;
        const handle = await open(chain.tokenFile, 'w'); // truncates
        await handle.write(t.slice(0, 100));
        await new Promise((r) => setImmediate(r));
        await handle.write(t.slice(100), 100);
        await handle.close();
      }
      writing = false;
    })();
    let whole = 0;
    let refused = 0;
    while (writing) {
      try {
        const { token } = await source.getToken();
        expect(tokens).toContain(token);
        whole += 1;
      } catch (err) {
        expect(err).toBeInstanceOf(CrosscredError);
        expect(['CROSSCRED_ERR_TOKEN_NOT_JWT']).toContain((err as CrosscredError).code);
        refused += 1;
      }
    }
    await writer;
    expect(whole + refused).toBeGreaterThan(10);
    expect(whole).toBeGreaterThan(0);
  });
});
