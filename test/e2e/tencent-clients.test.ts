import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/chain.js';
import { type NsProcess, VmNamespace } from './vm-chain/vm.js';

/**
 * The Tencent Cloud Node SDK's own CVM-role provider (tencentcloud-sdk-nodejs-common
 * `CvmRoleCredential`, and its `DefaultCredentialProvider` chain, which reaches the CVM role when
 * no key is in the environment or a profile), unmodified, against crosscred's emulated CVM metadata.
 *
 * A network namespace stands in for a pod: `metadata.tencentyun.com` (the name the SDK has
 * hard-coded) maps to 169.254.0.23 in its own /etc/hosts, as a `hostAliases` entry would, and
 * crosscred listens on port 80 of that address in the namespace. The chain behind it runs in the
 * namespace too, in one Node process from dist/: the demo OIDC issuer, the Tencent STS emulator
 * and crosscred's daemon with a Tencent role. The SDK runs in a child process of its own in the
 * namespace, with nothing of this process's environment but PATH. The keys it gets must be the
 * ones the STS emulator issued.
 *
 * Debian packages no Tencent client for Go or Python (`apt-cache search tencent` finds none), so
 * the Node SDK is the one real client here.
 */
const run = promisify(execFile);
const NS = `crosscred-tc-${process.pid}`;
const METADATA_ADDRESS = '169.254.0.23';
const METADATA_HOST = 'metadata.tencentyun.com';
const ROLE = 'crosscred-tencent';
const ROLE_ARN = `qcs::cam::uin/100012345678:roleName/${ROLE}`;
const CLIENT_TIMEOUT_MS = 30_000;

let unavailable: string | undefined;
let ns: VmNamespace | undefined;
let chain: NsProcess | undefined;
let scratch: string;

/** Why this cannot run here, or undefined. With CROSSCRED_E2E_STRICT=1 a missing piece fails the test instead. */
async function whyUnavailable(): Promise<string | undefined> {
  const strict = process.env['CROSSCRED_E2E_STRICT'] === '1';
  const missing = (why: string) => {
    if (strict) throw new Error(`${why}, and CROSSCRED_E2E_STRICT=1 requires the Tencent client test to run`);
    return why;
  };
  if (process.getuid?.() !== 0) return missing('not root: network namespaces and port 80 need root');
  try {
    await run('ip', ['netns', 'list'], { timeout: 10_000 });
  } catch (err) {
    return missing(`no usable "ip netns" here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  }
  if (!existsSync(join(REPO_ROOT, 'dist/demo/tencent-sts-emulator.js'))) return missing('dist/ is not built (npm run build)');
  return undefined;
}

const dist = (path: string) => pathToFileURL(join(REPO_ROOT, 'dist', path)).href;

/**
 * The chain inside the namespace. It answers `issued` on stdin with the keys the emulator issued
 * (secrets of this test only) as a control line.
 */
function chainScript(tokenDir: string): string {
  return `
import { writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { loadConfig } from ${JSON.stringify(dist('config/load.js'))};
import { DemoOidcIssuer } from ${JSON.stringify(dist('demo/oidc-issuer.js'))};
import { TencentStsEmulator } from ${JSON.stringify(dist('demo/tencent-sts-emulator.js'))};
import { startDaemon } from ${JSON.stringify(dist('serve/daemon.js'))};

const issuer = await DemoOidcIssuer.start();
const sts = await TencentStsEmulator.start({
  trust: [{ roleArn: ${JSON.stringify(ROLE_ARN)}, providerId: 'crosscred-oidc', issuer: issuer.url, audience: 'tencent-client', subject: 'system:serviceaccount:*' }],
});
const tokenFile = ${JSON.stringify(join(tokenDir, 'token'))};
await writeFile(tokenFile, await issuer.mint({ sub: 'system:serviceaccount:payments:api', aud: 'tencent-client', ttlSeconds: 3600 }));
const base = loadConfig({
  flags: { 'role-arn': 'arn:aws:iam::111122223333:role/placeholder', 'token-file': tokenFile, region: 'us-east-1', listen: ['${METADATA_ADDRESS}:80'], 'admin-listen': '127.0.0.1:0' },
  env: {},
});
const role = { ...base.roles[0], cloud: 'tencent', name: ${JSON.stringify(ROLE)}, roleArn: ${JSON.stringify(ROLE_ARN)}, accountId: '100012345678', providerId: 'crosscred-oidc', region: 'ap-guangzhou', stsEndpoint: sts.url };
const config = { ...base, roles: [role], listeners: base.listeners.map((l) => ({ ...l, role: role.name })), allowedHosts: [${JSON.stringify(METADATA_HOST)}] };
const daemon = await startDaemon(config, { logger: pino({ level: 'warn' }, process.stderr) });
await daemon.firstFetch;
console.log(JSON.stringify({ event: 'ready' }));
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'issued') console.log(JSON.stringify({ event: 'issued', issued: sts.issued }));
});
process.stdin.on('end', async () => {
  await daemon.close();
  await Promise.all([sts.close(), issuer.close()]);
  process.exit(0);
});
`;
}

/** An unmodified SDK call in the namespace: prints the credentials it got as one JSON line. */
const CLIENTS = {
  CvmRoleCredential: `
const { CvmRoleCredential } = require('tencentcloud-sdk-nodejs-common');
new CvmRoleCredential().getCredential().then((c) => console.log(JSON.stringify(c)), (e) => { console.error(e.message); process.exit(1); });
`,
  DefaultCredentialProvider: `
const { DefaultCredentialProvider } = require('tencentcloud-sdk-nodejs-common');
new DefaultCredentialProvider().getCredential().then((c) => console.log(JSON.stringify(c)), (e) => { console.error(e.message); process.exit(1); });
`,
} as const;

interface Issued {
  readonly secretId: string;
  readonly secretKey: string;
  readonly token: string;
}

async function issued(): Promise<Issued[]> {
  chain!.send('issued');
  return (await chain!.nextJson<{ issued: Issued[] }>((v) => v['event'] === 'issued')).issued;
}

beforeAll(async () => {
  unavailable = await whyUnavailable();
  if (unavailable) return;
  scratch = await mkdtemp(join(tmpdir(), 'crosscred-tencent-e2e-'));
  // Scripts in here resolve their packages (pino, the SDK) through this link, as a pod's app would its own.
  await symlink(join(REPO_ROOT, 'node_modules'), join(scratch, 'node_modules'), 'dir');
  await writeFile(join(scratch, 'chain.mjs'), chainScript(scratch));
  for (const [name, source] of Object.entries(CLIENTS)) await writeFile(join(scratch, `${name}.cjs`), source);
  ns = await VmNamespace.create(NS, {
    addresses: [METADATA_ADDRESS],
    hosts: `127.0.0.1 localhost\n${METADATA_ADDRESS} ${METADATA_HOST}\n`,
  });
  chain = await ns.start(
    'chain',
    process.execPath,
    [join(scratch, 'chain.mjs')],
    { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: scratch },
    /"event":"ready"/,
  );
}, 60_000);

afterAll(async () => {
  await ns?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
}, 30_000);

describe('the Tencent Node SDK against crosscred as the CVM metadata server', () => {
  it.each(Object.keys(CLIENTS))(
    '%s gets the keys the STS emulator issued, through metadata.tencentyun.com',
    async (name) => {
      if (unavailable) {
        console.warn(`skipped: ${unavailable}`);
        return;
      }
      // Only PATH and an empty HOME: no TENCENTCLOUD_* variables, no ~/.tencentcloud profile, no proxy.
      const out = await ns!.run(process.execPath, [join(scratch, `${name}.cjs`)], { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: scratch });
      const got = JSON.parse(out.trim()) as { secretId: string; secretKey: string; token: string };
      const keys = await issued();
      expect(keys.length).toBeGreaterThan(0);
      const current = keys.at(-1)!;
      expect(got).toEqual({ secretId: current.secretId, secretKey: current.secretKey, token: current.token });
      expect(got.secretId).toMatch(/^AKID/);
    },
    CLIENT_TIMEOUT_MS,
  );

  it('answers the metadata paths by that name and no other host', async () => {
    if (unavailable) return;
    const script = `
const http = require('node:http');
const get = (host, path) => new Promise((resolve, reject) => http.get({ host, path, timeout: 5000 }, (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => resolve({ status: res.statusCode, body: b })); }).on('error', reject));
(async () => {
  const list = await get('${METADATA_HOST}', '/latest/meta-data/cam/security-credentials/');
  const region = await get('${METADATA_HOST}', '/latest/meta-data/placement/region');
  const other = await new Promise((resolve, reject) => http.get({ host: '${METADATA_ADDRESS}', path: '/latest/meta-data/cam/security-credentials/', headers: { host: 'evil.example' } }, (res) => { res.resume(); resolve(res.statusCode); }).on('error', reject));
  console.log(JSON.stringify({ list, region, other }));
})();
`;
    await writeFile(join(scratch, 'paths.cjs'), script);
    const out = JSON.parse((await ns!.run(process.execPath, [join(scratch, 'paths.cjs')], { PATH: process.env['PATH'] ?? '/usr/bin:/bin' })).trim()) as {
      list: { status: number; body: string };
      region: { status: number; body: string };
      other: number;
    };
    expect(out.list).toEqual({ status: 200, body: ROLE });
    expect(out.region).toEqual({ status: 200, body: 'ap-guangzhou' });
    expect(out.other).toBe(403);
  }, 30_000);
});
