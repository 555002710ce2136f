import type { ServerResponse } from 'node:http';
import { APPLICATION_JSON, send } from '../http/responses.js';

/**
 * The node agent's error answers: `{"Code","Message"}` JSON, which the SDKs' container providers
 * read on a 4xx or 5xx. Codes are the agent's own (`ROLE_ARN_INVALID`, `TOKEN_EXPIRED`…) or STS's
 * (`InvalidIdentityToken`, `AccessDenied`); messages are fixed text, never request bytes.
 */

/** Bodies by status, code and message; every key is built from fixed text, so the map stays small. */
const rendered = new Map<string, Buffer>();

export function sendAgentError(res: ServerResponse, status: number, code: string, message: string, headers?: readonly string[]): void {
  const key = `${status}\u0000${code}\u0000${message}`;
  let body = rendered.get(key);
  if (body === undefined) {
    body = Buffer.from(JSON.stringify({ Code: code, Message: message }));
    rendered.set(key, body);
  }
  send(res, status, APPLICATION_JSON, body, headers);
}
