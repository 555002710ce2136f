import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CrosscredError } from '../../src/core/errors.js';
import { classifyFailure } from '../../src/exchange/failure.js';

/** An error shaped as @aws-sdk/client-sts throws them (name = error code, $metadata with status). */
function sdkError(name: string, httpStatusCode?: number): Error {
  return Object.assign(new Error(`message from STS for ${name}`), {
    name,
    $fault: httpStatusCode !== undefined && httpStatusCode >= 500 ? 'server' : 'client',
    $metadata: httpStatusCode === undefined ? {} : { httpStatusCode },
  });
}

/** A Node network error as undici or net raise it. */
function networkError(code: string, message = `connect ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

describe('classifyFailure: terminal STS answers', () => {
  const terminal = [
    ['InvalidIdentityToken', 400],
    ['IDPRejectedClaim', 403],
    ['AccessDenied', 403],
    ['MalformedPolicyDocument', 400],
    ['PackedPolicyTooLarge', 400],
    ['RegionDisabled', 403],
    ['ValidationError', 400],
  ] as const;

  const EXPECTED_HINTS: Record<string, RegExp | undefined> = {
    AccessDenied: expect.stringMatching(/trust policy .*sts:ExternalId/) as unknown as RegExp,
    MalformedPolicyDocument: expect.stringMatching(/not a valid IAM policy document/) as unknown as RegExp,
    PackedPolicyTooLarge: expect.stringMatching(/fewer or shorter tags/) as unknown as RegExp,
  };

  for (const [code, status] of terminal) {
    for (const name of [code, `${code}Exception`]) {
      it(`treats ${name} as terminal with code ${code}`, () => {
        const failure = classifyFailure(sdkError(name, status));
        expect(failure).toMatchObject({ kind: 'terminal', code, message: `STS refused the exchange: ${code}` });
        // A fixed hint where the code alone does not say what to change; none where it does.
        expect(failure.hint).toEqual(EXPECTED_HINTS[code]);
      });
    }
  }

  it('treats an unknown error code on a 4xx as terminal, with a bounded code and the name in the message', () => {
    const result = classifyFailure(sdkError('SomethingNewException', 400));
    expect(result).toMatchObject({ kind: 'terminal', code: 'HTTP400' });
    expect(result.message).toContain('SomethingNewException');
  });

  it('treats a bare 403 without a usable name as terminal HTTP403', () => {
    expect(classifyFailure({ $metadata: { httpStatusCode: 403 } })).toMatchObject({ kind: 'terminal', code: 'HTTP403' });
  });

  it('never puts the STS message (which may echo the request) into its own message', () => {
    const err = Object.assign(new Error('token eyJhbGciOi... was rejected'), { name: 'InvalidIdentityTokenException', $metadata: { httpStatusCode: 400 } });
    expect(classifyFailure(err).message).not.toContain('eyJ');
  });
});

describe('classifyFailure: retryable failures', () => {
  it('retries IDPCommunicationError, with or without the Exception suffix', () => {
    expect(classifyFailure(sdkError('IDPCommunicationErrorException', 400))).toEqual({
      kind: 'retryable',
      code: 'IDPCommunicationError',
      message: 'STS answered IDPCommunicationError',
    });
    expect(classifyFailure(sdkError('IDPCommunicationError', 400))).toMatchObject({ kind: 'retryable', code: 'IDPCommunicationError' });
  });

  it('retries throttling even though it arrives as a 400', () => {
    expect(classifyFailure(sdkError('Throttling', 400))).toMatchObject({ kind: 'retryable', code: 'Throttling' });
    expect(classifyFailure(sdkError('ThrottlingException', 400))).toMatchObject({ kind: 'retryable', code: 'Throttling' });
    expect(classifyFailure(sdkError('RequestLimitExceeded', 400))).toMatchObject({ kind: 'retryable' });
  });

  it('retries HTTP 500 and 503 with an unknown name, coded by status', () => {
    expect(classifyFailure(sdkError('Unknown', 500))).toEqual({ kind: 'retryable', code: 'HTTP500', message: 'STS answered HTTP 500' });
    expect(classifyFailure(sdkError('Unknown', 503))).toMatchObject({ kind: 'retryable', code: 'HTTP503' });
    expect(classifyFailure({ $metadata: { httpStatusCode: 502 } })).toMatchObject({ kind: 'retryable', code: 'HTTP502' });
  });

  it('retries an unnamed 429', () => {
    expect(classifyFailure({ $metadata: { httpStatusCode: 429 } })).toMatchObject({ kind: 'retryable', code: 'HTTP429' });
  });

  it('retries connection refused, on the error or on its cause', () => {
    expect(classifyFailure(networkError('ECONNREFUSED'))).toEqual({
      kind: 'retryable',
      code: 'ECONNREFUSED',
      message: 'STS could not be reached: ECONNREFUSED',
    });
    const fetchFailed = Object.assign(new TypeError('fetch failed'), { cause: networkError('ECONNRESET') });
    expect(classifyFailure(fetchFailed)).toMatchObject({ kind: 'retryable', code: 'ECONNRESET' });
  });

  it('retries undici timeouts', () => {
    for (const code of ['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']) {
      expect(classifyFailure(networkError(code))).toMatchObject({ kind: 'retryable', code });
    }
  });

  it('retries TimeoutError and AbortError by name', () => {
    expect(classifyFailure(Object.assign(new Error('timed out'), { name: 'TimeoutError' }))).toMatchObject({ kind: 'retryable', code: 'TimeoutError' });
    expect(classifyFailure(new DOMException('aborted', 'AbortError'))).toMatchObject({ kind: 'retryable', code: 'AbortError' });
  });

  it('retries a network error even when a 4xx status is attached', () => {
    expect(classifyFailure(Object.assign(networkError('ETIMEDOUT'), { $metadata: { httpStatusCode: 400 } }))).toMatchObject({ kind: 'retryable' });
  });

  it("retries crosscred's own errors, keeping their code and their catalogue hint", () => {
    const err = new CrosscredError('TOKEN_NOT_JWT', 'token file /t does not hold a compact JWT');
    expect(classifyFailure(err)).toEqual({
      kind: 'retryable',
      code: 'CROSSCRED_ERR_TOKEN_NOT_JWT',
      message: err.message,
      hint: expect.stringMatching(/does not hold a complete JWT yet/),
    });
    expect(classifyFailure(new CrosscredError('STS_BAD_RESPONSE', 'no key'))).toMatchObject({ kind: 'retryable', code: 'CROSSCRED_ERR_STS_BAD_RESPONSE' });
  });

  it('treats a session template the token cannot fill as terminal', () => {
    const err = new CrosscredError('SESSION_TEMPLATE_UNRESOLVED', 'the session name of role app names {pod}, which the web-identity token does not carry');
    expect(classifyFailure(err)).toMatchObject({
      kind: 'terminal',
      code: 'CROSSCRED_ERR_SESSION_TEMPLATE_UNRESOLVED',
      hint: expect.stringMatching(/change the template/),
    });
  });

  it('retries anything unrecognised without a status as UnexpectedError', () => {
    for (const err of [new Error('boom'), undefined, null, 'a string', 42, {}]) {
      expect(classifyFailure(err)).toMatchObject({ kind: 'retryable', code: 'UnexpectedError' });
    }
    const typeError = classifyFailure(new TypeError('x is undefined'));
    expect(typeError).toMatchObject({ kind: 'retryable', code: 'UnexpectedError' });
    expect(typeError.message).toContain('TypeError');
    expect(typeError.message).not.toContain('x is undefined');
  });

  it('ignores network codes it does not know', () => {
    expect(classifyFailure(networkError('EWHATEVER'))).toMatchObject({ kind: 'retryable', code: 'UnexpectedError' });
  });
});

describe('classifyFailure: TLS', () => {
  it('retries certificate failures and names the CA bundle in the message', () => {
    for (const code of [
      'DEPTH_ZERO_SELF_SIGNED_CERT',
      'SELF_SIGNED_CERT_IN_CHAIN',
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'CERT_HAS_EXPIRED',
      'ERR_TLS_CERT_ALTNAME_INVALID',
    ]) {
      const result = classifyFailure(networkError(code));
      expect(result).toMatchObject({ kind: 'retryable', code });
      expect(result.message).toContain('--ca-bundle');
    }
  });
});

describe('classifyFailure: expired web-identity token', () => {
  it('asks for a token re-read on ExpiredTokenException', () => {
    expect(classifyFailure(sdkError('ExpiredTokenException', 400))).toEqual({
      kind: 'token-expired',
      code: 'ExpiredToken',
      message: 'STS says the web-identity token has expired',
    });
    expect(classifyFailure(sdkError('ExpiredToken', 400)).kind).toBe('token-expired');
  });
});

describe('classifyFailure: hostile error names and codes', () => {
  it('never adopts a long name as the code', () => {
    const long = 'A'.repeat(65);
    for (const status of [400, 500, undefined]) {
      const result = classifyFailure(sdkError(long, status));
      expect(result.code).not.toBe(long);
      expect(result.code.length).toBeLessThanOrEqual(64);
      expect(result.message).not.toContain(long);
    }
  });

  it('never adopts a name with a newline, even one that looks like a known code', () => {
    const result = classifyFailure(sdkError('AccessDenied\nlevel=error msg=forged', 403));
    expect(result).toEqual({ kind: 'terminal', code: 'HTTP403', message: 'STS refused the exchange with HTTP 403' });
    expect(classifyFailure(sdkError('Throttling\n', 400)).code).toBe('HTTP400');
  });

  it('never adopts an arbitrary error code string from the wire', () => {
    const result = classifyFailure(networkError('ECONNREFUSED\ninjected'));
    expect(result.code).toBe('UnexpectedError');
  });

  it('produces a bounded code and message for any name, code and status', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.string({ unit: 'binary', maxLength: 200 }),
          fc.constantFrom('AccessDenied', 'ThrottlingException', 'ExpiredTokenException'),
        ),
        fc.oneof(fc.string({ maxLength: 100 }), fc.constant(undefined), fc.constantFrom('ECONNREFUSED', 'UND_ERR_SOCKET')),
        fc.option(fc.integer({ min: 100, max: 599 }), { nil: undefined }),
        (name, code, status) => {
          const err = Object.assign(new Error('m'), { name, code, $metadata: { httpStatusCode: status } });
          const result = classifyFailure(err);
          expect(['terminal', 'retryable', 'token-expired']).toContain(result.kind);
          expect(result.code).toMatch(/^[A-Za-z][A-Za-z0-9._]{0,63}$/);
          // Printable ASCII only, and short: no log-line injection, no unbounded metric labels.
          expect(result.message).toMatch(/^[\x20-\x7e]{1,120}$/);
          if (name.length > 64 || /[^A-Za-z0-9.]/.test(name)) expect(result.code).not.toBe(name);
        },
      ),
      { numRuns: 2_000 },
    );
  });
});
