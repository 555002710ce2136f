// Alibaba Cloud and AWS STS as seen from an ECS instance, inside the VM's network namespace:
// the fake ECS metadata server (token mode required; the identity's PKCS#7 signed with the test's
// CA by openssl) on 100.100.100.200:80, and the STS emulator on 127.0.0.1, trusting the issuer.
// Config (JSON file, argv[2]): { fakesDir, distDir, signer: {dir, signerCertPath, signerKeyPath,
// caPath}, instance, trust, issuerAdminUrl }.
import { readFile } from 'node:fs/promises';
import { emulatorReport, importFrom, issuerRequests, readConfig, serveControl, startEmulator } from './peer.mjs';

const METADATA_HOST = '100.100.100.200';
const METADATA_PORT = 80;

const config = await readConfig();
const { FakeEcsMetadata } = await importFrom(config.fakesDir, 'fake-alibaba-cloud.mjs');
const signer = {
  ...config.signer,
  caPem: await readFile(config.signer.caPath, 'utf8'),
  signerCertPem: await readFile(config.signer.signerCertPath, 'utf8'),
  // The test owns the directory and removes it.
  close: async () => undefined,
};
const metadata = await FakeEcsMetadata.start({ instance: config.instance, signer, requireToken: true, host: METADATA_HOST, port: METADATA_PORT });
const emulator = await startEmulator(config.distDir, config.trust);

serveControl({
  ready: { metadata: metadata.url, sts: emulator.url },
  report: async () => ({
    metadata: metadata.records.map((r) => ({ method: r.method, path: r.path, query: r.query, token: r.token })),
    emulator: emulatorReport(emulator),
    issuerRequests: await issuerRequests(config.issuerAdminUrl),
  }),
  close: () => Promise.all([metadata.close(), emulator.close()]),
  // ModifyInstanceMetadataOptions --HttpTokens optional|required, as the instance's owner would.
  commands: { 'tokens-optional': () => (metadata.requireToken = false), 'tokens-required': () => (metadata.requireToken = true) },
});
