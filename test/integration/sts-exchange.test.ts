import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { AwsWebIdentityExchange, createStsClient } from '../../src/exchange/aws-web-identity-exchange.js';
import { WebIdentityRole } from '../../src/roles/web-identity-role.js';
import { FileTokenSource } from '../../src/sources/file-token-source.js';
import type { TokenSource } from '../../src/sources/token-source.js';
import { type Chain, roleArn, startChain } from '../support/chain.js';

let chain: Chain;
beforeAll(async () => {
  chain = await startChain();
});
afterAll(() => chain?.close());

describe('A web-identity role on ExpiredToken', () => {
  it('tells a caching source to forget its token before the one retry', async () => {
    const file = new FileTokenSource(chain.tokenFile, systemClock);
    let invalidations = 0;
    const caching: TokenSource = {
      description: 'caching test source',
      getToken: () => file.getToken(),
      invalidate: () => {
        invalidations += 1;
      },
    };
    const client = createStsClient({ region: 'us-east-1', endpoint: chain.sts.url, connectTimeoutMs: 1000, responseTimeoutMs: 2000 });
    try {
      const exchange = new WebIdentityRole(
        'app',
        caching,
        new AwsWebIdentityExchange({ roleName: 'app', roleArn: roleArn('app'), accountId: '111122223333', sessionName: 'test-session' }, client, systemClock),
      );
      chain.sts.failNext({ kind: 'error', status: 400, code: 'ExpiredTokenException' });
      const before = chain.sts.calls;
      const credentials = await exchange.exchange();
      expect(credentials.cloud === 'aws' && credentials.accessKeyId).toBe(chain.sts.issued.at(-1)!.accessKeyId);
      expect(chain.sts.calls - before).toBe(2);
      expect(invalidations).toBe(1);
    } finally {
      client.destroy();
    }
  });
});
