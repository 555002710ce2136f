import { describe, expect, it } from 'vitest';
import { alibabaDocumentsFor, alibabaTimestamp, type ReceivedAlibabaCredentials } from '../../src/platform/alibaba/credential-documents.js';

const entry = (expirationWall: number): ReceivedAlibabaCredentials => ({
  credentials: {
    cloud: 'alibaba',
    accessKeyId: 'STS.NUgYrLnoC37mZZCNnAbez',
    accessKeySecret: 'secret/with+chars=',
    securityToken: 'CAIS-token',
    expirationWall,
    roleArn: 'acs:ram::1234567890123456:role/oss-reader',
    accountId: '1234567890123456',
  },
  receivedAtWall: Date.UTC(2026, 11, 7, 22, 0, 0, 999),
});

describe('the Alibaba credential documents', () => {
  it('render the URI provider answer with Code and whole-second Expiration', () => {
    const doc = JSON.parse(alibabaDocumentsFor(entry(Date.UTC(2026, 11, 7, 23, 0, 0, 750))).uri.toString('utf8'));
    expect(doc).toEqual({
      Code: 'Success',
      AccessKeyId: 'STS.NUgYrLnoC37mZZCNnAbez',
      AccessKeySecret: 'secret/with+chars=',
      SecurityToken: 'CAIS-token',
      // Truncated, never rounded up: an expiry may look earlier, never later.
      Expiration: '2026-12-07T23:00:00Z',
    });
  });

  it('render the ECS metadata document: the same fields and LastUpdated', () => {
    const doc = JSON.parse(alibabaDocumentsFor(entry(Date.UTC(2026, 11, 7, 23, 0, 0))).ecsMetadata.toString('utf8'));
    expect(doc).toMatchObject({
      Code: 'Success',
      AccessKeyId: 'STS.NUgYrLnoC37mZZCNnAbez',
      Expiration: '2026-12-07T23:00:00Z',
      LastUpdated: '2026-12-07T22:00:00Z',
    });
    expect(Object.keys(doc).sort()).toEqual(['AccessKeyId', 'AccessKeySecret', 'Code', 'Expiration', 'LastUpdated', 'SecurityToken']);
  });

  it('render each body once per entry, and anew for a new entry', () => {
    const first = entry(Date.UTC(2026, 11, 7, 23, 0, 0));
    const docs = alibabaDocumentsFor(first);
    expect(alibabaDocumentsFor(first)).toBe(docs);
    expect(docs.uri).toBe(docs.uri);
    expect(docs.ecsMetadata).toBe(docs.ecsMetadata);
    expect(alibabaDocumentsFor(entry(Date.UTC(2026, 11, 7, 23, 0, 0)))).not.toBe(docs);
  });

  it('write timestamps in the one form the Go SDK parses', () => {
    for (const ms of [0, 1, 999, Date.UTC(2030, 0, 1, 0, 0, 59, 999)]) expect(alibabaTimestamp(ms)).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  });
});
