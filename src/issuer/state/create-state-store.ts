import { CrosscredError } from '../../core/errors.js';
import { type MemoryStateLimits, MemoryStateStore } from './memory-store.js';
import type { StateHealthListener, StateStore, TenantBounds } from './ports.js';

/**
 * Chooses the state backend from the issuer's `state` setting: `memory` (the default, one replica)
 * or a `redis://` / `rediss://` URL (a fleet). The Redis module, and the Redis client with it, is
 * imported only when a Redis URL is given, so a single replica never loads it.
 */

export const DEFAULT_STATE = 'memory';

export interface StateStoreOptions {
  readonly memoryLimits?: Partial<MemoryStateLimits>;
  readonly bounds?: Partial<TenantBounds>;
  readonly onHealthChange?: StateHealthListener;
  readonly connectTimeoutMs?: number;
  readonly commandTimeoutMs?: number;
  readonly keyPrefix?: string;
}

/** Why `spec` is not a state setting, or undefined. Never echoes a password. */
export function stateSettingProblem(spec: string): string | undefined {
  if (spec === 'memory') return undefined;
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    return 'must be memory, or a redis:// or rediss:// URL';
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return `must be memory, or a redis:// or rediss:// URL (not ${url.protocol.slice(0, 20)})`;
  if (url.hostname === '') return 'names no Redis host';
  if (url.search !== '' || url.hash !== '') return 'takes no query or fragment (redis[s]://[user:password@]host[:port][/db])';
  if (!/^\/?(?:\d{1,2})?$/.test(url.pathname)) return 'the path must be a database number, such as /0';
  return undefined;
}

/** The store the setting names; throws CONFIG_INVALID for a setting stateSettingProblem refuses. */
export async function createStateStore(spec: string = DEFAULT_STATE, options: StateStoreOptions = {}): Promise<StateStore> {
  const problem = stateSettingProblem(spec);
  if (problem !== undefined) throw new CrosscredError('CONFIG_INVALID', `state: ${problem}`);
  if (spec === 'memory') return new MemoryStateStore({ ...options.bounds, ...options.memoryLimits });
  const { RedisStateStore } = await import('./redis-store.js');
  return new RedisStateStore({
    url: spec,
    ...(options.bounds ? { bounds: options.bounds } : {}),
    ...(options.onHealthChange ? { onHealthChange: options.onHealthChange } : {}),
    ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
    ...(options.commandTimeoutMs !== undefined ? { commandTimeoutMs: options.commandTimeoutMs } : {}),
    ...(options.keyPrefix !== undefined ? { keyPrefix: options.keyPrefix } : {}),
  });
}
