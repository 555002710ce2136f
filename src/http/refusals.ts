import type { ErrorName } from '../core/errors.js';

/** Why a listener answers a request itself instead of routing it. */
export type Refusal = 'closing' | 'overloaded' | 'body-too-large' | 'body-chunked' | 'transfer-coding-invalid' | 'host-repeated';

/** What a refusal means, whatever the product: each product renders it its own way (text, JSON, OAuth). */
export interface RefusalAnswer {
  readonly status: number;
  /** The catalogue entry for renderers that name one (text and JSON); OAuth renderers use `busy`. */
  readonly name: ErrorName;
  /** Fixed text: never request bytes. */
  readonly message: string;
  /** The server cannot take the request now (503 with Retry-After), as opposed to a bad request. */
  readonly busy: boolean;
  readonly headers?: readonly string[];
}

const RETRY_SOON = ['retry-after', '1'] as const;

/**
 * The one refusal table. `maxRequestBodyBytes` is the listener's body limit; `readsBodies` is true
 * where the handler reads a body (the issuer's token endpoint), which answers a chunked body 411
 * Length Required, while listeners that never read one answer 413.
 */
export function refusalAnswer(why: Refusal, limits: { readonly maxRequestBodyBytes: number; readonly readsBodies?: boolean }): RefusalAnswer {
  switch (why) {
    case 'closing':
      return { status: 503, name: 'SHUTTING_DOWN', message: 'crosscred is stopping', busy: true, headers: RETRY_SOON };
    case 'overloaded':
      return { status: 503, name: 'OVERLOADED', message: 'too many open connections', busy: true, headers: RETRY_SOON };
    case 'body-too-large':
      return limits.readsBodies
        ? { status: 413, name: 'REQUEST_INVALID', message: `the request body exceeds ${limits.maxRequestBodyBytes} bytes`, busy: false }
        : { status: 413, name: 'REQUEST_INVALID', message: `request bodies are not accepted (limit ${limits.maxRequestBodyBytes} bytes)`, busy: false };
    case 'body-chunked':
      return limits.readsBodies
        ? { status: 411, name: 'REQUEST_INVALID', message: 'send the body with a Content-Length (chunked bodies are not read)', busy: false }
        : { status: 413, name: 'REQUEST_INVALID', message: 'chunked request bodies are not accepted', busy: false };
    case 'transfer-coding-invalid':
      return { status: 400, name: 'REQUEST_INVALID', message: 'a request Transfer-Encoding must end in chunked', busy: false };
    case 'host-repeated':
      return { status: 400, name: 'REQUEST_INVALID', message: 'the request has more than one Host header', busy: false };
  }
}
