import { channel } from 'node:diagnostics_channel';

/**
 * Something a token source learned that an operator should act on, though it does not stop the
 * source (a weaker set-up than it could be). Never holds a token, a key or a document.
 */
export interface SourceWarning {
  /** Stable, for log queries: `ALIBABA_METADATA_TOKENS_OPTIONAL`. */
  readonly code: string;
  readonly message: string;
  /** What to run or change. */
  readonly fix: string;
}

/**
 * Where sources publish warnings. Sources may not import the logger (docs/architecture.md), and the
 * VM sources are built deep inside `createTokenSource`; a named diagnostics channel lets `serve`
 * log what they publish without a handle passed down. With no subscriber, a publish is a no-op.
 */
export const SOURCE_WARNINGS = channel('crosscred:token-source-warning');

export function publishSourceWarning(warning: SourceWarning): void {
  SOURCE_WARNINGS.publish(warning);
}
