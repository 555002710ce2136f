import { describe, expect, it } from 'vitest';
import { redactSecrets } from '../../src/sources/redact-secrets.js';

describe('redactSecrets', () => {
  it.each([
    ['refresh_token=abc123&client_secret=xyz789&grant_type=refresh_token', 'refresh_token=[redacted]&client_secret=[redacted]&grant_type=refresh_token'],
    ['PASSWORD: hunter2 next', 'PASSWORD: [redacted] next'],
    ['AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG', 'AWS_SECRET_ACCESS_KEY=[redacted]'],
    ['{"apiKey": "k-123", "user": "bob"}', '{"apiKey": [redacted], "user": "bob"}'],
    ["token='abc def' rest", 'token=[redacted] rest'],
    ['Authorization: Bearer abc.def-ghi', 'Authorization: Bearer [redacted]'],
    ['authorization: basic dXNlcjpwYXNz', 'authorization: basic [redacted]'],
    ['via https://me:pr0xy@proxy.corp:3128/', 'via https://me:[redacted]@proxy.corp:3128/'],
    ['got eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln here', 'got [jwt] here'],
    ['cut eyJhbGciOiJFUzI1', 'cut [jwt]'],
  ])('masks %j', (input, masked) => {
    expect(redactSecrets(input)).toBe(masked);
  });

  it('leaves text without secrets as it was', () => {
    const text = 'error: cannot reach metadata server at 100.100.100.200 (timeout after 5 s); profile=default';
    expect(redactSecrets(text)).toBe(text);
  });
});
