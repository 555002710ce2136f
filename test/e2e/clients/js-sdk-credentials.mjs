// Runs one unmodified AWS JS SDK v3 credential provider, configured only by the environment, and
// prints what it obtained. A separate process, so each provider sees exactly the environment given.
import { fromHttp, fromInstanceMetadata, fromNodeProviderChain } from '@aws-sdk/credential-providers';

const providers = {
  'instance-metadata': () => fromInstanceMetadata(),
  http: () => fromHttp(),
  'node-provider-chain': () => fromNodeProviderChain(),
};
const make = providers[process.argv[2]];
if (!make) {
  console.error(`usage: js-sdk-credentials.mjs ${Object.keys(providers).join('|')}`);
  process.exit(2);
}
const c = await make()();
console.log(
  JSON.stringify({
    accessKeyId: c.accessKeyId,
    secretAccessKey: c.secretAccessKey,
    sessionToken: c.sessionToken,
    expiration: c.expiration?.toISOString(),
    accountId: c.accountId,
  }),
);
