import type { ServerResponse } from 'node:http';
import { CrosscredError, ErrorCodes, type ErrorName } from '../core/errors.js';
import { HTTP_LIMITS } from './limits.js';
import { type Refusal, refusalAnswer } from './refusals.js';

/** IMDS answers in plain text, as EC2 does; the container endpoint in JSON (the SDKs parse its errors). */
export type ErrorFormat = 'text' | 'json';

export const TEXT_PLAIN = 'text/plain';
export const APPLICATION_JSON = 'application/json';

/** Writes a whole response in one go: status, content type, length, any extra headers, body. */
export function send(res: ServerResponse, status: number, contentType: string, body: Buffer, extraHeaders?: readonly string[]): void {
  const headers = ['content-type', contentType, 'content-length', String(body.length)];
  if (extraHeaders !== undefined) headers.push(...extraHeaders);
  res.writeHead(status, headers);
  res.end(body);
}

/** A rendered error answer; rendered once per (error, message, format, status) and reused. */
export interface ErrorAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

/**
 * Error answers are rendered from the catalogue the first time they are needed and then served
 * from this map. Its keys are built only from catalogue names, fixed messages and configured role
 * names, never from request bytes, so it cannot grow with what clients send.
 */
const rendered = new Map<string, ErrorAnswer>();

/**
 * Answers with an error from the catalogue: `{"Code","Message"}` JSON for the container endpoint,
 * one line of text for IMDS. The status is the catalogue's unless `status` overrides it.
 * `message` must never contain request bytes or a secret.
 */
export function sendError(
  res: ServerResponse,
  name: ErrorName,
  message: string,
  format: ErrorFormat,
  options?: { status?: number; headers?: readonly string[] },
): void {
  const answer = renderError(name, message, format, options?.status);
  send(res, answer.status, answer.contentType, answer.body, options?.headers);
}

/** An error answer's status, content type and body, rendered once and then reused. */
export function renderError(name: ErrorName, message: string, format: ErrorFormat, status: number = ErrorCodes[name].status): ErrorAnswer {
  const key = `${format}\u0000${status}\u0000${name}\u0000${message}`;
  let answer = rendered.get(key);
  if (answer === undefined) {
    const err = new CrosscredError(name, message);
    answer =
      format === 'json'
        ? { status, contentType: APPLICATION_JSON, body: Buffer.from(JSON.stringify({ Code: err.code, Message: `${err.message} (${err.hint})` })) }
        : { status, contentType: TEXT_PLAIN, body: Buffer.from(`${err.describe()}\n`) };
    rendered.set(key, answer);
  }
  return answer;
}

/** Answers a request the listener refuses before routing, in the endpoint's error format. */
export function refuse(res: ServerResponse, why: Refusal, format: ErrorFormat): void {
  const answer = refusalAnswer(why, { maxRequestBodyBytes: HTTP_LIMITS.maxRequestBodyBytes });
  sendError(res, answer.name, answer.message, format, { status: answer.status, ...(answer.headers ? { headers: answer.headers } : {}) });
}
