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
 * refresh starts from the deepest one that still has REUSE_MARGIN_MS to live: a chain whose hub
 * session lasts an hour renews its target about twice per web-identity exchange. When a hop says its
 * caller's credentials are expired or unknown (revoked, or this host's clock is wrong), the chain
 * forgets everything it kept and runs once more from its first step; a failure then is final for
 * this attempt, judged by the classifier with the step it happened at (ChainStepFailure).
 */
export class ChainedRole implements CredentialExchange {
  /** `#kept[i]`: the credentials of step i (0 = web identity) and the identity of its token. */
  #kept: { readonly credentials: AwsCredentials; readonly identity: WorkloadIdentity }[] = [];

  constructor(
    readonly roleName: string,
    private readonly first: WebIdentityRole,
    private readonly firstRoleArn: string,
    private readonly hops: readonly ChainHop[],
    private readonly assumeRole: AwsAssumeRole,
    private readonly clock: Clock,
  ) {}

  async exchange(signal?: AbortSignal): Promise<CloudCredentials> {
    const reused = this.#reusableSteps();
    try {
      return await this.#run(reused, signal);
    } catch (err) {
      if (reused === 0 || signal?.aborted || !callerRejected(err)) throw err;
      this.#kept = [];
      return await this.#run(0, signal);
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
      const roleArn = step === 0 ? this.firstRoleArn : this.hops[step - 1]!.roleArn;
      if (reports.some((r) => !r.ok)) {
        reports.push({ step, roleArn, ok: false, notTried: true });
        continue;
      }
      try {
        previous = step === 0 ? await this.first.exchangeWithIdentity(signal) : await this.#hop(step, previous!, signal);
        const c = previous.credentials;
        reports.push({ step, roleArn, ok: true, accountId: c.accountId, expirationWall: c.expirationWall });
      } catch (err) {
        reports.push({ step, roleArn, ok: false, failure: classifyFailure(err instanceof ChainStepFailure ? err : new ChainStepFailure(step, roleArn, err)) });
      }
    }
    return reports;
  }

  /** How many leading steps have kept credentials with REUSE_MARGIN_MS left: the run starts after them. */
  #reusableSteps(): number {
    const now = this.clock.wallNow();
    let n = 0;
    while (n < this.hops.length && this.#kept[n] !== undefined && this.#kept[n]!.credentials.expirationWall - now > REUSE_MARGIN_MS) n++;
    return n;
  }

  async #run(from: number, signal: AbortSignal | undefined): Promise<CloudCredentials> {
    let previous: ExchangedIdentity;
    if (from === 0) {
      try {
        previous = await this.first.exchangeWithIdentity(signal);
      } catch (err) {
        throw new ChainStepFailure(0, this.firstRoleArn, err);
      }
      this.#kept[0] = { credentials: previous.credentials as AwsCredentials, identity: previous.identity };
    } else {
      previous = this.#kept[from - 1]!;
    }
    for (let step = Math.max(from, 1); step <= this.hops.length; step++) {
      previous = await this.#hop(step, previous, signal);
      if (step < this.hops.length) this.#kept[step] = { credentials: previous.credentials as AwsCredentials, identity: previous.identity };
    }
    return previous.credentials;
  }

  async #hop(step: number, caller: ExchangedIdentity, signal: AbortSignal | undefined): Promise<ExchangedIdentity> {
    const hop = this.hops[step - 1]!;
    try {
      const request = hop.request(caller.identity, this.roleName);
      const credentials = await this.assumeRole.assume(caller.credentials as AwsCredentials, request, signal);
      return { credentials, identity: caller.identity };
    } catch (err) {
      throw new ChainStepFailure(step, hop.roleArn, err);
    }
  }
}

/** Kept credentials are reused for the next hop only while they have this long to live. */
export const REUSE_MARGIN_MS = 5 * 60_000;

/** How one step of a chain went, for `doctor`. Step 0 is the web-identity step. */
export type ChainStepReport =
  | { readonly step: number; readonly roleArn: string; readonly ok: true; readonly accountId: string; readonly expirationWall: number }
  | { readonly step: number; readonly roleArn: string; readonly ok: false; readonly failure: ClassifiedFailure }
  | { readonly step: number; readonly roleArn: string; readonly ok: false; readonly notTried: true };

/** A hop says the credentials it was signed with are expired or unknown to STS: renew them from the first step. */
function callerRejected(err: unknown): boolean {
  if (!(err instanceof ChainStepFailure) || err.step === 0) return false;
  const code = classifyFailure(err.cause).code;
  return code === 'ExpiredToken' || code === 'InvalidClientTokenId';
}

/** One hop, its templates parsed once: `request` fills them in from the workload's identity. */
export class ChainHop {
  readonly roleArn: string;
  readonly #config: ChainHopConfig;
  readonly #naming: SessionNaming | undefined;
  readonly #fixedName: string;
  readonly #tags: readonly { readonly key: string; readonly template: SessionTemplate }[];

  constructor(config: ChainHopConfig, roleSessionName: string, host: string) {
    this.roleArn = config.roleArn;
    this.#config = config;
    const name = config.sessionName ?? roleSessionName;
    const template = checked(parseTemplate(name), 'sessionName');
    this.#naming = template.variables.length > 0 ? new SessionNaming(template, sessionNameFitter('aws'), host) : undefined;
    this.#fixedName = name;
    this.#tags = (config.tags ?? []).map((t) => ({ key: t.key, template: checked(parseTemplate(t.value), `tag ${t.key}`) }));
  }

  request(identity: WorkloadIdentity, roleName: string): AssumeRoleRequest {
    const c = this.#config;
    const where = `hop ${c.roleArn} of role ${roleName}`;
    return {
      roleName,
      roleArn: c.roleArn,
      accountId: c.accountId,
      sessionName: this.#naming ? this.#naming.fill(identity, `the session name of ${where}`) : this.#fixedName,
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
 */
export function roleExchangeFor(
  role: RoleConfig,
  source: TokenSource,
  sts: StsConnection,
  clock: Clock,
  host: string = hostname(),
): WebIdentityRole | ChainedRole {
  const first = webIdentityRoleFor(role, source, sts, clock, host);
  if (role.cloud !== 'aws' || !role.chain?.length) return first;
  if (sts.cloud !== 'aws') throw new Error(`role ${role.name} is an AWS role but was given a ${sts.cloud} STS connection`);
  const hops = role.chain.map((hop) => new ChainHop(hop, role.sessionName, host));
  return new ChainedRole(role.name, first, role.roleArn, hops, new AwsAssumeRole(sts.endpoint, sts.transport, clock), clock);
}
