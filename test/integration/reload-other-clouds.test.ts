import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { AlibabaStsEmulator } from '../../src/demo/alibaba-sts-emulator.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { TencentStsEmulator } from '../../src/demo/tencent-sts-emulator.js';
import { type RunningDaemon, startDaemon } from '../../src/serve/daemon.js';
import { memoryLogger } from '../support/chain.js';

/**
 * A configuration reload (SIGHUP) with roles in other clouds: a role added in another cloud is
 * fetched and served; a listener's role that would change cloud is kept as it is and reported as
 * needing a restart, since the listener's routes speak the cloud it started with.
 */
const SUBJECT = 'system:serviceaccount:apps:web';
const RAM_ROLE = 'acs:ram::1234567890123456:role/shared-name';
const RAM_PROVIDER = 'acs:ram::1234567890123456:oidc-provider/eks';
const CAM_ROLE = 'qcs::cam::uin/100012345678:roleName/shared-name';

let issuer: DemoOidcIssuer;
let alibaba: AlibabaStsEmulator;
let tencent: TencentStsEmulator;
let dir: string;
let daemon: RunningDaemon;

beforeAll(async () => {
  issuer = await DemoOidcIssuer.start();
  alibaba = await AlibabaStsEmulator.start({
    trust: [{ roleArn: RAM_ROLE, oidcProviderArn: RAM_PROVIDER, issuer: issuer.url, audience: 'sts.aliyuncs.com', subject: SUBJECT }],
  });
  tencent = await TencentStsEmulator.start({
    trust: [{ roleArn: CAM_ROLE, providerId: 'eks', issuer: issuer.url, audience: 'sts.cloud.tencent.com', subject: SUBJECT }],
  });
  dir = await mkdtemp(join(tmpdir(), 'crosscred-reload-clouds-'));
  for (const [name, aud] of [
    ['ali', 'sts.aliyuncs.com'],
    ['tc', 'sts.cloud.tencent.com'],
  ] as const) {
    await writeFile(join(dir, `${name}.tmp`), await issuer.mint({ sub: SUBJECT, aud, ttlSeconds: 3600 }));
    await rename(join(dir, `${name}.tmp`), join(dir, name));
  }
});

afterAll(async () => {
  await daemon?.close();
  await Promise.all([issuer?.close(), alibaba?.close(), tencent?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const alibabaRole = (name: string) =>
  `  - {cloud: alibaba, name: ${name}, roleArn: "${RAM_ROLE}", oidcProviderArn: "${RAM_PROVIDER}", stsEndpoint: "${alibaba.url}", tokenFile: "${join(dir, 'ali')}"}`;
const tencentRole = (name: string) =>
  `  - {cloud: tencent, name: ${name}, roleArn: "${CAM_ROLE}", providerId: eks, region: ap-guangzhou, stsEndpoint: "${tencent.url}", tokenFile: "${join(dir, 'tc')}"}`;

function configOf(roles: string[]) {
  const yaml = ['roles:', ...roles, 'listen: ["127.0.0.1:0=served"]', 'adminListen: off', ''].join('\n');
  return loadConfig({ flags: { config: '/c.yaml' }, env: {}, readText: () => yaml });
}

describe('reloading roles of other clouds', () => {
  it('adds a role of another cloud, and keeps a listened role whose cloud would change', async () => {
    daemon = await startDaemon(configOf([alibabaRole('served')]), { logger: memoryLogger('info').logger });
    await daemon.firstFetch;
    const uri = `http://127.0.0.1:${daemon.listeners[0]!.port}/v1/alibaba/credentials`;
    expect((await request(uri)).statusCode).toBe(200);

    const summary = await daemon.reload(configOf([tencentRole('served'), tencentRole('extra')]));
    expect(summary.added).toEqual(['extra']);
    expect(summary.replaced).toEqual([]);
    expect(summary.restartNeeded).toEqual(['roles whose cloud changed, served by a listener (served)']);
    expect(daemon.roles.get('served')!.config.cloud).toBe('alibaba');
    expect(daemon.roles.get('extra')!.cache.current()?.credentials.cloud).toBe('tencent');
    // The listener goes on serving what it speaks.
    const res = await request(uri);
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as { Code: string }).Code).toBe('Success');
  });
});
