// Tencent Cloud and AWS STS as seen from a CVM instance, inside the VM's network namespace:
// - the fake CVM metadata server, reached where the SDK looks for it: http://metadata.tencentyun.com
//   (the namespace's /etc/hosts names 169.254.0.23, forwarded here to the fake's loopback port);
// - the fake Tencent STS (verifies TC3 signatures) behind a TLS front on 127.0.0.1:443 with a
//   certificate for sts.tencentcloudapi.com from the test's CA (the namespace's /etc/hosts points
//   that name at 127.0.0.1): the official endpoint the source signs for by default, which the
//   issuer's attestor accepts without extraStsEndpoints and reaches with caBundleFile;
// - the STS emulator on 127.0.0.1, trusting the issuer.
// Config (JSON file, argv[2]): { fakesDir, distDir, role: {uin, roleId, roleName}, instanceId,
// region, metadataAddress, tls: {certPath, keyPath}, trust, issuerAdminUrl }.
import { emulatorReport, forward, importFrom, issuerRequests, readConfig, serveControl, startEmulator } from './peer.mjs';

const HTTPS_PORT = 443;
const HTTP_PORT = 80;

const config = await readConfig();
const { FakeCvmMetadata, FakeTencentSts } = await importFrom(config.fakesDir, 'fake-tencent-cloud.mjs');
const sts = await FakeTencentSts.start();
const metadata = await FakeCvmMetadata.start({ sts, ...config.role, instanceId: config.instanceId, region: config.region });
const metadataFront = await forward({ host: config.metadataAddress, port: HTTP_PORT, targetPort: metadata.port });
const stsFront = await forward({ host: '127.0.0.1', port: HTTPS_PORT, targetPort: sts.port, tls: config.tls });
const emulator = await startEmulator(config.distDir, config.trust);

serveControl({
  ready: { sts: emulator.url, tencentSts: sts.url, metadata: metadata.url },
  report: async () => ({
    metadataPaths: [...metadata.paths],
    tencentSts: sts.records.map((r) => ({
      outcome: r.outcome,
      host: r.headers['host'],
      audience: r.headers['x-crosscred-audience'],
      action: r.headers['x-tc-action'],
      signedHeaders: /SignedHeaders=([^,\s]+)/.exec(String(r.headers['authorization'] ?? ''))?.[1],
    })),
    emulator: emulatorReport(emulator),
    issuerRequests: await issuerRequests(config.issuerAdminUrl),
  }),
  close: () => Promise.all([stsFront.close(), metadataFront.close(), metadata.close(), sts.close(), emulator.close()]),
});
