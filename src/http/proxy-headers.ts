import type { IncomingMessage } from 'node:http';

/**
 * Headers a proxy adds to what it forwards, lower-cased (node lower-cases header names, so every
 * spelling is caught, repeated or empty). EC2 refuses a metadata token to X-Forwarded-For; crosscred
 * also refuses the standard `Forwarded` (RFC 7239), `X-Real-IP` (nginx) and `Via` (RFC 9110 §7.6.3),
 * on AWS's and Alibaba's token PUT alike, so a proxy tricked into forwarding the PUT is not given a
 * token whichever of them it adds.
 */
const PROXY_HEADERS = [
  ['x-forwarded-for', 'X-Forwarded-For'],
  ['forwarded', 'Forwarded'],
  ['x-real-ip', 'X-Real-IP'],
  ['via', 'Via'],
] as const;

/** The canonical name of the first proxy header the request carries, or undefined. Never its value. */
export function proxyHeaderOf(req: IncomingMessage): string | undefined {
  for (const [name, shown] of PROXY_HEADERS) if (req.headers[name] !== undefined) return shown;
  return undefined;
}
