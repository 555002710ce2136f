import { hostname } from 'node:os';
import type { ChainHopConfig, RoleConfig } from '../config/config.js';
import type { Clock } from '../core/clock.js';
import { type AssumeRoleRequest, AwsAssumeRole } from '../exchange/aws-assume-role.js';
import { ChainStepFailure } from '../exchange/chain-step-failure.js';
import type { CloudCredentials, CredentialExchange } from '../exchange/credentials.js';
import { type ClassifiedFailure, classifyFailure } from '../exchange/failure.js';
import type { AwsCredentials } from '../platform/aws/credentials.js';
import { sanitizeTagValue } from '../platform/aws/session-tags.js';
import { parseTemplate, type SessionTemplate, type WorkloadIdentity } from '../protocol/workload-identity.js';
import type { TokenSource } from '../sources/token-source.js';
import {
  type ExchangedIdentity,
  fillTemplate,
  SessionNaming,
  type StsConnection,
  sessionNameFitter,
  type WebIdentityRole,
  webIdentityRoleFor,
} from './web-identity-role.js';

/**
 * A role chain (#18): the web-identity step (AssumeRoleWithWebIdentity of the hub role), then one
 * sts:AssumeRole per hop, each signed with the credentials of the step before. What the cache holds
 * and serves under the role's name is the last hop's credentials; the cache refreshes the chain as
 * one unit, through its single flight, refresh policy and failure classifier.
 *
 * The credentials of the steps before the last are kept (in memory, like everything else) and a
 * refresh starts after the deepest one that still has REUSE_MARGIN_MS to live: a chain whose hub
 * session lasts an hour renews its target about twice per web-identity exchange. The web-identity
 * step may be shared by every chain that starts at the same hub with the same token and session
 * (WebIdentityStep): a thousand targets behind one hub cost one web-identity call, not a thousand.
 * When a hop refuses the reused credentials it was signed with (ExpiredToken or InvalidClientTokenId:
 * ended early by STS; AccessDenied for credentials a hop accepted before: revoked), the chain forgets
 * what it kept and runs once more from its first step; a failure then is final for this attempt,
 * judged by the classifier with the step it happened at (ChainStepFailure).
 */
export class ChainedRole implements CredentialExchange {
  /** `#kept[i]`: the credentials of hop i (1 … hops − 1), and the identity of the token behind them. */
  #kept: (ExchangedIdentity | undefined)[] = [];
  /** Callers a hop of this chain has accepted: an AccessDenied for one of them later means it was revoked. */
  readonly #accepted = new WeakSet<ExchangedIdentity>();

  constructor(
    readonly roleName: string,
    private readonly first: WebIdentityStep,
    private readonly hops: readonly ChainHop[],
    private readonly assumeRole: AwsAssumeRole,
    private readonly clock: Clock,
  ) {}

  async exchange(signal?: AbortSignal): Promise<CloudCredentials> {
    const kept = this.#deepestKeptHop();
    let usedKept = kept > 0;
    try {
      if (kept > 0) return await this.#run(kept + 1, this.#kept[kept]!, signal);
      const first = await this.#first(signal);
      usedKept = first.reused;
      return await this.#run(1, first.step, signal);
    } catch (err) {
      if (!usedKept || signal?.aborted || !(err instanceof ChainStepFailure && err.callerRejected)) throw err;
      // The hub's session, if it was the one refused, is forgotten by the shared step already:
      // another chain may have renewed it since, and that newer one is taken without a new call.
      this.#kept = [];
      const first = await this.#first(signal);
      return await this.#run(1, first.step, signal);
    }
  }

  /**
   * Runs every step once, fresh, and says how each went: what `doctor` shows. Steps after a failed
   * one are not tried. Nothing is kept.
   */
  async walk(signal?: AbortSignal): Promise<ChainStepReport[]> {
    const reports: ChainStepReport[] = [];
    let previous: ExchangedIdentity | undefined;
    for (let step = 0; step <= this.hops.length; step++) {
      const roleArn = step === 0 ? this.first.roleArn : this.hops[step - 1]!.roleArn;
      if (reports.some((r) => !r.ok)) {
        reports.push({ step, roleArn, ok: false, notTried: true });
        continue;
      }
      try {
        previous = step === 0 ? await this.first.fresh(signal) : await this.#hop(step, previous!, signal);
        const c = previous.credentials;
        reports.push({ step, roleArn, ok: true, accountId: c.accountId, expirationWall: c.expirationWall });
      } catch (err) {
        reports.push({ step, roleArn, ok: false, failure: classifyFailure(err instanceof ChainStepFailure ? err : new ChainStepFailure(step, roleArn, err)) });
      }
    }
    return reports;
  }

  /** The deepest hop before the last whose kept credentials, and every one before them, have REUSE_MARGIN_MS left; 0 for none. */
  #deepestKeptHop(): number {
    const now = this.clock.wallNow();
    let n = 0;
    while (n + 1 < this.hops.length && this.#kept[n + 1] !== undefined && this.#kept[n + 1]!.credentials.expirationWall - now > REUSE_MARGIN_MS) n++;
    return n;
  }

  async #first(signal: AbortSignal | undefined): Promise<{ readonly step: ExchangedIdentity; readonly reused: boolean }> {
    try {
      return await this.first.credentials(signal);
    } catch (err) {
      throw new ChainStepFailure(0, this.first.roleArn, err);
    }
  }

  /** Hops `from` … last, the first signed with `caller`; keeps what the hops before the last return. */
  async #run(from: number, caller: ExchangedIdentity, signal: AbortSignal | undefined): Promise<CloudCredentials> {
    let previous = caller;
    for (let step = from; step <= this.hops.length; step++) {
      previous = await this.#hop(step, previous, signal);
      if (step < this.hops.length) this.#kept[step] = previous;
    }
    return previous.credentials;
  }

  async #hop(step: number, caller: ExchangedIdentity, signal: AbortSignal | undefined): Promise<ExchangedIdentity> {
    const hop = this.hops[step - 1]!;
    try {
      const request = hop.request(caller.identity, this.roleName);
      const credentials = await this.assumeRole.assume(caller.credentials as AwsCredentials, request, signal);
      this.#accepted.add(caller);
      return { credentials, identity: caller.identity };
    } catch (err) {
      const rejected = callerRejected(err, this.#accepted.has(caller));
      // The hub's session itself was refused: no chain may be handed it again.
      if (step === 1 && rejected) this.first.forget(caller);
      throw new ChainStepFailure(step, hop.roleArn, err, rejected);
    }
  }
}

/**
 * The web-identity step of one or more chains: the hub's session, kept while it has REUSE_MARGIN_MS
 * left and renewed by one exchange however many chains ask at once. A chain's waiting gives up when
 * its own deadline passes; the exchange goes on for the others, bounded by the transport's timeouts.
 */
export class WebIdentityStep {
  #kept: ExchangedIdentity | undefined;
  #inFlight: Promise<ExchangedIdentity> | undefined;

  constructor(
    readonly roleArn: string,
    private readonly role: WebIdentityRole,
    private readonly clock: Clock,
  ) {}

  /**
   * The kept session while it has REUSE_MARGIN_MS left (`reused`), else the next fresh one
   * (joining an exchange already on the wire). A session a hop refused is forgotten first.
   */
  async credentials(signal?: AbortSignal): Promise<{ readonly step: ExchangedIdentity; readonly reused: boolean }> {
    const kept = this.#kept;
    if (kept && kept.credentials.expirationWall - this.clock.wallNow() > REUSE_MARGIN_MS) return { step: kept, reused: true };
    if (!this.#inFlight) {
      this.#inFlight = this.role.exchangeWithIdentity().then(
        (step) => {
          this.#kept = step;
          this.#inFlight = undefined;
          return step;
        },
        (err: unknown) => {
          this.#inFlight = undefined;
          throw err;
        },
      );
    }
    return { step: await untilAborted(this.#inFlight, signal), reused: false };
  }

  /** A fresh exchange of its own, kept by nobody: what `doctor` tries. */
  fresh(signal?: AbortSignal): Promise<ExchangedIdentity> {
    return this.role.exchangeWithIdentity(signal);
  }

  /** A hop refused this session: it is not handed out again (unless a newer one replaced it already). */
  forget(step: ExchangedIdentity): void {
    if (this.#kept === step) this.#kept = undefined;
  }
}

/** `promise`, or a rejection as soon as `signal` aborts (the promise itself goes on). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Kept credentials are reused for the next hop only while they have this long to live. */
export const REUSE_MARGIN_MS = 5 * 60_000;

/** How one step of a chain went, for `doctor`. Step 0 is the web-identity step. */
export type ChainStepReport =
  | { readonly step: number; readonly roleArn: string; readonly ok: true; readonly accountId: string; readonly expirationWall: number }
  | { readonly step: number; readonly roleArn: string; readonly ok: false; readonly failure: ClassifiedFailure }
  | { readonly step: number; readonly roleArn: string; readonly ok: false; readonly notTried: true };

/**
 * A hop's answer says the credentials it was signed with are no good, rather than the hop itself:
 * expired or unknown to STS, or, for credentials a hop of this chain accepted before, denied (IAM's
 * "revoke active sessions" is an explicit deny: AccessDenied). A caller that was denied from the
 * start is a trust-policy problem, which renewing would not fix.
 */
function callerRejected(err: unknown, acceptedBefore: boolean): boolean {
  const code = classifyFailure(err).code;
  return code === 'ExpiredToken' || code === 'InvalidClientTokenId' || (acceptedBefore && code === 'AccessDenied');
}

/** One hop, its templates parsed once: `request` fills them in from the workload's identity. */
export class ChainHop {
  readonly roleArn: string;
  readonly #config: ChainHopConfig;
  readonly #naming: SessionNaming;
  readonly #tags: readonly { readonly key: string; readonly template: SessionTemplate }[];

  constructor(config: ChainHopConfig, roleSessionName: string) {
    this.roleArn = config.roleArn;
    this.#config = config;
    // A fixed name is a template without variables: filling it in gives it back, and fitting a name
    // the configuration already checked changes nothing.
    this.#naming = new SessionNaming(checked(parseTemplate(config.sessionName ?? roleSessionName), 'sessionName'), sessionNameFitter('aws'));
    this.#tags = (config.tags ?? []).map((t) => ({ key: t.key, template: checked(parseTemplate(t.value), `tag ${t.key}`) }));
  }

  request(identity: WorkloadIdentity, roleName: string): AssumeRoleRequest {
    const c = this.#config;
    const where = `hop ${c.roleArn} of role ${roleName}`;
    return {
      roleName,
      roleArn: c.roleArn,
      accountId: c.accountId,
      sessionName: this.#naming.fill(identity, `the session name of ${where}`),
      ...(c.externalId !== undefined ? { externalId: c.externalId } : {}),
      ...(c.durationSeconds !== undefined ? { durationSeconds: c.durationSeconds } : {}),
      ...(c.policy !== undefined ? { policy: c.policy } : {}),
      ...(c.policyArns ? { policyArns: c.policyArns } : {}),
      ...(this.#tags.length > 0
        ? { tags: this.#tags.map((t) => ({ key: t.key, value: sanitizeTagValue(fillTemplate(t.template, identity, `tag ${t.key} of ${where}`)) })) }
        : {}),
      ...(c.transitiveTagKeys?.length ? { transitiveTagKeys: c.transitiveTagKeys } : {}),
    };
  }
}

function checked(parsed: SessionTemplate | { readonly problem: string }, what: string): SessionTemplate {
  if ('problem' in parsed) throw new Error(`${what} ${parsed.problem} (the configuration checks this)`);
  return parsed;
}

/**
 * What the cache refreshes for a configured role: its web-identity step alone, or, with a `chain`,
 * the whole chain. A chain is AWS's only (the configuration refuses it on another cloud's role).
 * `firstStep` shares one web-identity step between chains (see webIdentityStepKey); without it the
 * chain has its own.
 */
export function roleExchangeFor(
  role: RoleConfig,
  source: TokenSource,
  sts: StsConnection,
  clock: Clock,
  options: { readonly host?: string; readonly firstStep?: WebIdentityStep } = {},
): WebIdentityRole | ChainedRole {
  const host = options.host ?? hostname();
  if (role.cloud !== 'aws' || !role.chain?.length) return webIdentityRoleFor(role, source, sts, clock, host);
  if (sts.cloud !== 'aws') throw new Error(`role ${role.name} is an AWS role but was given a ${sts.cloud} STS connection`);
  // `{host}` comes with the identity the web-identity step reads (WebIdentityRole's host).
  const hops = role.chain.map((hop) => new ChainHop(hop, role.sessionName));
  const firstStep = options.firstStep ?? webIdentityStepFor(role, source, sts, clock, host);
  return new ChainedRole(role.name, firstStep, hops, new AwsAssumeRole(sts.endpoint, sts.transport, clock), clock);
}

/**
 * The web-identity step of a chained role, for sharing: chains that name the same hub, token
 * source, session name, duration and session policies, over the same STS connection, can share one
 * (`stsKey` is stsConnectionKey's). Undefined for a role without a chain.
 */
export function webIdentityStepKey(role: RoleConfig, stsKey: string): string | undefined {
  if (role.cloud !== 'aws' || !role.chain?.length) return undefined;
  return JSON.stringify([
    stsKey,
    role.roleArn,
    role.token.source,
    role.sessionName,
    role.durationSeconds ?? null,
    role.policy ?? null,
    role.policyArns ?? null,
  ]);
}

/** A shared web-identity step for a chained role, built from that role's own token source. */
export function webIdentityStepFor(role: RoleConfig, source: TokenSource, sts: StsConnection, clock: Clock, host: string = hostname()): WebIdentityStep {
  return new WebIdentityStep(role.roleArn, webIdentityRoleFor(role, source, sts, clock, host), clock);
}
