import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_ARGS, CLI_EXEC, REPO_ROOT } from '../support/chain.js';
import { type NsProcess, VmNamespace } from './vm-chain/vm.js';

/**
 * The Tencent Cloud Node SDK's own CVM-role provider (tencentcloud-sdk-nodejs-common
 * `CvmRoleCredential`, and its `DefaultCredentialProvider` chain, which reaches the CVM role when
 * no key is in the environment or a profile), unmodified, against crosscred's emulated CVM metadata.
 *
 * A network namespace stands in for a pod: `metadata.tencentyun.com` (the name the SDK has
 * hard-coded) maps to 169.254.0.23 in its own /etc/hosts, as a `hostAliases` entry would, and
 * the real CLI (`crosscred serve --config`, a `cloud: tencent` role) listens on port 80 of that
 * address in the namespace. What is around it runs in the namespace too, in one Node process from
 * dist/: the demo OIDC issuer and the Tencent STS emulator. The SDK runs in a child process of its
 * own in the namespace, with nothing of this process's environment but PATH and an empty HOME. The
 * keys it gets must be the ones the STS emulator issued.
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
const PROVIDER = 'crosscred-oidc';
/** The token's audience: the default crosscred asks for a Tencent role, as CAM's provider would be registered. */
const AUDIENCE = 'sts.cloud.tencent.com';
const ADMIN_PORT = 8171;
const CLIENT_TIMEOUT_MS = 30_000;

let unavailable: string | undefined;
let ns: VmNamespace | undefined;
let chain: NsProcess | undefined;
let serve: NsProcess | undefined;
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
  if (!existsSync(join(REPO_ROOT, 'dist/demo/tencent-sts-emulator.js')) || !existsSync(join(REPO_ROOT, 'dist/cli/main.js'))) {
    return missing('dist/ is not built (npm run build)');
  }
  return undefined;
}

const dist = (path: string) => pathToFileURL(join(REPO_ROOT, 'dist', path)).href;

/**
 * The parts around crosscred, inside the namespace: the demo OIDC issuer and the Tencent STS
 * emulator (from dist/), and the token file. It says `{"event":"ready","sts":…}` when up, and
 * answers `issued` on stdin with the keys the emulator issued (secrets of this test only).
 */
function chainScript(tokenFile: string): string {
  return `
import { writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { DemoOidcIssuer } from ${JSON.stringify(dist('demo/oidc-issuer.js'))};
import { TencentStsEmulator } from ${JSON.stringify(dist('demo/tencent-sts-emulator.js'))};

const issuer = await DemoOidcIssuer.start();
const sts = await TencentStsEmulator.start({
  trust: [{ roleArn: ${JSON.stringify(ROLE_ARN)}, providerId: ${JSON.stringify(PROVIDER)}, issuer: issuer.url, audience: ${JSON.stringify(AUDIENCE)}, subject: 'system:serviceaccount:payments:*' }],
});
await writeFile(${JSON.stringify(tokenFile)}, await issuer.mint({ sub: 'system:serviceaccount:payments:api', aud: ${JSON.stringify(AUDIENCE)}, ttlSeconds: 3600 }));
console.log(JSON.stringify({ event: 'ready', sts: sts.url }));
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'issued') console.log(JSON.stringify({ event: 'issued', issued: sts.issued }));
});
process.stdin.on('end', async () => {
  await Promise.all([sts.close(), issuer.close()]);
  process.exit(0);
});
`;
}

/** crosscred's config file for the pod: one Tencent role, served at the metadata address under the metadata name. */
function configFile(stsUrl: string, tokenFile: string): string {
  return [
    'roles:',
    `  - name: ${ROLE}`,
    '    cloud: tencent',
    `    roleArn: "${ROLE_ARN}"`,
    `    providerId: ${PROVIDER}`,
    '    region: ap-guangzhou',
    `    stsEndpoint: "${stsUrl}"`,
    `    tokenFile: "${tokenFile}"`,
    `listen: ["${METADATA_ADDRESS}:80"]`,
    `adminListen: "127.0.0.1:${ADMIN_PORT}"`,
    '',
  ].join('\n');
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
  const tokenFile = join(scratch, 'token');
  await writeFile(join(scratch, 'chain.mjs'), chainScript(tokenFile));
  for (const [name, source] of Object.entries(CLIENTS)) await writeFile(join(scratch, `${name}.cjs`), source);
  ns = await VmNamespace.create(NS, {
    addresses: [METADATA_ADDRESS],
    hosts: `127.0.0.1 localhost\n${METADATA_ADDRESS} ${METADATA_HOST}\n`,
  });
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: scratch };
  chain = await ns.start('chain', process.execPath, [join(scratch, 'chain.mjs')], env, /"event":"ready"/);
  const stsUrl = (await chain.nextJson<{ sts: string }>((v) => v['event'] === 'ready')).sts;
  await writeFile(join(scratch, 'crosscred.yaml'), configFile(stsUrl, tokenFile));
  // The real CLI, as a pod's sidecar runs it; ready once `wait-ready` says its role has credentials.
  serve = await ns.start('crosscred serve', CLI_EXEC, [...CLI_ARGS, 'serve', '--config', join(scratch, 'crosscred.yaml')], env, /credential listener open/);
  await ns.run(CLI_EXEC, [...CLI_ARGS, 'wait-ready', '--admin', `http://127.0.0.1:${ADMIN_PORT}`, '--timeout-ms', '15000'], env).catch((err: Error) => {
    throw new Error(`${err.message}\n${serve?.output() ?? ''}`);
  });
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
