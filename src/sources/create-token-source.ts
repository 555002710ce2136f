import { DEFAULT_STS_CONNECT_TIMEOUT_MS, DEFAULT_STS_RESPONSE_TIMEOUT_MS, type TokenSourceConfig } from '../config/config.js';
import type { Clock } from '../core/clock.js';
import { AwsOutboundTokenSource } from './aws-outbound-token-source.js';
import { ExecTokenSource } from './exec-token-source.js';
import { FileTokenSource } from './file-token-source.js';
import { KubernetesTokenSource } from './kubernetes-token-source.js';
import type { SourceWarningSink } from './source-warnings.js';
import type { TokenSource } from './token-source.js';
import { VmTokenSource } from './vm-token-source.js';

/** Time allowed for one TokenRequest to the Kubernetes API server (connect and answer), in ms. */
const KUBERNETES_REQUEST_TIMEOUT_MS = 10_000;

/** What a caller may be told about a source beyond its tokens and errors. */
export interface TokenSourceHooks {
  /** A token command's stderr, secrets masked: for a debug log line only (ExecTokenSourceOptions.onStderr). */
  readonly tokenCommandStderr?: (masked: string) => void;
  /** What a source learns at first use that an operator should fix (VM sources): for a warn log line. */
  readonly sourceWarning?: SourceWarningSink;
}

/** The token source a role's configuration describes. */
export function createTokenSource(config: TokenSourceConfig, clock: Clock, hooks: TokenSourceHooks = {}): TokenSource & { close?(): unknown } {
  switch (config.kind) {
    case 'file':
      return new FileTokenSource(config.path, clock);
    case 'exec':
      return new ExecTokenSource(config.argv, config.timeoutMs, clock, {
        ...(config.passEnv ? { passEnv: config.passEnv } : {}),
        ...(hooks.tokenCommandStderr ? { onStderr: hooks.tokenCommandStderr } : {}),
      });
    case 'kubernetes':
      return new KubernetesTokenSource({ ...config, requestTimeoutMs: KUBERNETES_REQUEST_TIMEOUT_MS, clock });
    case 'vm-issuer':
      return new VmTokenSource({
        cloud: config.cloud,
        issuer: config.issuer,
        alibabaAttestation: config.alibabaAttestation,
        ...(config.cloudStsEndpoint ? { cloudStsEndpoint: config.cloudStsEndpoint } : {}),
        ...(hooks.sourceWarning ? { onWarning: hooks.sourceWarning } : {}),
        clock,
      });
    case 'aws-outbound':
      // The STS connection's own settings (proxies, CA bundle, timeouts) are not passed here yet:
      // the defaults of --sts-connect-timeout-ms and --sts-timeout-ms, no proxy, Node's roots.
      return new AwsOutboundTokenSource({
        audience: config.audience,
        signingAlgorithm: config.signingAlgorithm,
        durationSeconds: config.durationSeconds,
        region: config.region,
        ...(config.stsEndpoint ? { stsEndpoint: config.stsEndpoint } : {}),
        transport: { connectTimeoutMs: DEFAULT_STS_CONNECT_TIMEOUT_MS, responseTimeoutMs: DEFAULT_STS_RESPONSE_TIMEOUT_MS },
        clock,
      });
  }
}
