import { CrosscredError } from '../core/errors.js';
import type { IssuerConfig } from './issuer-config.js';
import { type AttestationKind, FIRST_USE_KINDS, KIND_CLOUD } from './policy.js';
import { createStateStore, DEFAULT_STATE } from './state/create-state-store.js';
import type { ResetVerdict, StateStore } from './state/ports.js';
import { stateTenant } from './state-keys.js';

/** How long the command waits for the state store to connect, in ms: generous for a Redis across a network. */
const CONNECT_DEADLINE_MS = 10_000;

/**
 * `crosscred issuer reset-instance`: forgets an instance's first-use binding, so that its next
 * attestation binds the secret it then presents. For an instance that was re-imaged (its crosscred
 * lost its instance secret file) or rebuilt with the same id: only after the operator has made sure
 * that the VM itself, not an SSRF on it, will attest next.
 */

export interface ResetRequest {
  readonly kind: string;
  readonly account: string;
  readonly instanceId: string;
}

/** Checks the request against what can be bound at all; throws CONFIG_INVALID naming the problem. */
export function checkResetRequest(config: IssuerConfig, request: ResetRequest): AttestationKind {
  const kind = FIRST_USE_KINDS.find((k) => k === request.kind);
  if (kind === undefined) throw new CrosscredError('CONFIG_INVALID', `--kind must be one of ${FIRST_USE_KINDS.join(', ')} (the kinds that bind on first use)`);
  if (!/^\d{1,32}$/.test(request.account)) throw new CrosscredError('CONFIG_INVALID', '--account must be the account id (digits)');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(request.instanceId)) throw new CrosscredError('CONFIG_INVALID', '--instance-id must be an instance id');
  // Bindings of state: memory live inside the running issuer process; another process cannot reach them.
  if (config.state === DEFAULT_STATE)
    throw new CrosscredError(
      'CONFIG_INVALID',
      'state is memory: bindings live in the running issuer and are forgotten when it restarts; reset-instance needs state: redis://…',
    );
  return kind;
}

/** Opens the configured state store, removes the binding, closes the store. */
export async function resetInstance(config: IssuerConfig, request: ResetRequest): Promise<ResetVerdict> {
  const kind = checkResetRequest(config, request);
  let connected: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    connected = resolve;
  });
  const store = await createStateStore(config.state, { onHealthChange: (health) => health.ready && connected() });
  try {
    await untilReady(store, ready);
    return await store.firstUse.reset(stateTenant({ cloud: KIND_CLOUD[kind], accountId: request.account }), request.instanceId);
  } finally {
    await store.close();
  }
}

/** Waits until the store has connected, or the deadline passes (the reset then answers `unavailable`). */
async function untilReady(store: StateStore, ready: Promise<void>): Promise<void> {
  if (store.health().ready) return;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, CONNECT_DEADLINE_MS);
    timer.unref();
  });
  try {
    await Promise.race([ready, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
