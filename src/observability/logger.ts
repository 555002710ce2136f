import { type LevelWithSilent, type Logger, type LoggerOptions as LoggerConfig, pino } from 'pino';

/**
 * Secrets are never handed to the logger in the first place; these paths are a second line of
 * defence should a future change pass a request, a credentials object or a token by mistake.
 */
export const REDACT_PATHS = [
  'token',
  'jwt',
  'secret',
  'authorization',
  'accessKeyId',
  'secretAccessKey',
  'sessionToken',
  'AccessKeyId',
  'SecretAccessKey',
  'SessionToken',
  'Token',
  'WebIdentityToken',
  'credentials',
  // Node's HTTP parser errors carry the request's raw bytes, headers (and so secrets) included.
  'rawPacket',
  '*.rawPacket',
  '*.token',
  '*.jwt',
  '*.secret',
  '*.authorization',
  '*.accessKeyId',
  '*.secretAccessKey',
  '*.sessionToken',
  '*.AccessKeyId',
  '*.SecretAccessKey',
  '*.SessionToken',
  '*.Token',
  '*.WebIdentityToken',
  '*.credentials',
  'req.headers.authorization',
  'req.headers["x-aws-ec2-metadata-token"]',
  'headers.authorization',
  'headers["x-aws-ec2-metadata-token"]',
];

export interface LoggerOptions {
  readonly level: LevelWithSilent;
  /** File descriptor to write to: 1 for the daemon (journald, kubectl logs), 2 when stdout carries data. */
  readonly fd?: 1 | 2;
}

/** The logger settings, shared by the daemon and by tests that capture its output in memory. */
export function loggerOptions(level: LevelWithSilent): LoggerConfig {
  return {
    level,
    base: { service: 'crosscred' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(loggerOptions(options.level), pino.destination({ fd: options.fd ?? 1, sync: false }));
}
