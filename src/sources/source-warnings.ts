/**
 * Something a token source learned that an operator should act on, though it does not stop the
 * source (a weaker set-up than it could be). Never holds a token, a key or a document. Sources may
 * not hold the logger (docs/architecture.md): whoever builds one passes an `onWarning` sink, as
 * `serve` does through createTokenSource's hooks.
 */
export interface SourceWarning {
  /** Stable, for log queries: `ALIBABA_METADATA_TOKENS_OPTIONAL`. */
  readonly code: string;
  readonly message: string;
  /** What to run or change. */
  readonly fix: string;
}

export type SourceWarningSink = (warning: SourceWarning) => void;
