import { choiceProblem, problem } from './checks.js';
import type { LogLevel } from './config.js';
import { type Layers, pickSetting, type Resolved, valueOrDefault } from './layers.js';

/** The logging section: the pino level. */
export function resolveLogging(layers: Layers): Resolved<LogLevel> {
  const level = pickSetting('logLevel', layers);
  const bad = level && choiceProblem('logLevel', level.value);
  return { value: valueOrDefault('logLevel', level) as LogLevel, problems: bad ? [problem('log-level', level.origin, bad)] : [] };
}
