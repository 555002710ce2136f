import { describe, expect, it, vi } from 'vitest';

/**
 * A single replica never loads the Redis client: create-state-store.ts imports the Redis backend
 * only for a redis:// URL. Here loading 'redis' at all throws, so a static import anywhere on the
 * memory path would fail this file's first test.
 */
vi.mock('redis', () => {
  throw new Error('the redis module was loaded');
});

describe('the state backend is chosen before the Redis client is loaded', () => {
  it('memory works without loading redis', async () => {
    const { createStateStore } = await import('../../src/issuer/state/create-state-store.js');
    const store = await createStateStore('memory');
    expect(await store.replay.claim('t', 'k', 60_000)).toBe('accepted');
    await store.close();
  });

  it('a Redis URL is what loads it (so the test above can fail)', async () => {
    const { createStateStore } = await import('../../src/issuer/state/create-state-store.js');
    // Without the mock this resolves to a store; with it, importing the backend fails (vitest wraps the factory's error).
    await expect(createStateStore('redis://127.0.0.1:1/0')).rejects.toThrow();
  });
});
