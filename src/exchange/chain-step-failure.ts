/**
 * A failure of one step of a role chain (src/roles/role-chain.ts): which step, and what went wrong
 * there. Step 0 is the web-identity exchange; step N is the Nth sts:AssumeRole. The one failure
 * classifier (failure.ts) judges `cause` and says which step it was, so a log line, `/readyz` and
 * `doctor` name the hop that failed. Nothing here is secret: a role ARN and a step number.
 */
export class ChainStepFailure extends Error {
  override readonly name = 'ChainStepFailure';

  constructor(
    readonly step: number,
    readonly roleArn: string,
    override readonly cause: unknown,
    /**
     * STS refused the credentials this step was signed with, not the step itself: they expired or
     * are unknown, or (for credentials a step accepted before) were revoked. The chain renews them.
     */
    readonly callerRejected = false,
  ) {
    super(`step ${step} of the role chain (${roleArn}) failed`);
  }

  /** The step in words: `the web-identity step` or `hop 2`. */
  get stepWords(): string {
    return this.step === 0 ? 'the web-identity step' : `hop ${this.step}`;
  }
}
