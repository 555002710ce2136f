import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { AUDIENCE, CLI_ARGS, CLI_EXEC, REPO_ROOT, roleArn } from '../support/chain.js';
import { CLIENTS } from '../support/clients.js';
import { makeSigningCa, type SigningCa, sampleInstance } from '../support/fake-alibaba-cloud.js';
import {
  COMMAND_TIMEOUT_MS,
  makeServingCertificate,
  type NsProcess,
  START_TIMEOUT_MS,
  scratchDir,
  transpileFakes,
  VmNamespace,
  vmChainUnavailable,
  vmEnv,
} from './vm-chain/vm.js';

/**
 * Issue 7's whole chain, end to end, on a VM stand-in: a network namespace holding the cloud's
 * metadata address and 169.254.169.254 on its loopback. Inside it run the fake cloud (metadata
 * server, and for Tencent its STS), `crosscred issuer serve`, the STS emulator (which finds the
 * issuer's keys through /.well-known/openid-configuration, as AWS IAM does), and
 * `crosscred serve --listen 169.254.169.254:80` with the alibaba-ecs or tencent-cvm source. The
 * unmodified AWS CLI v2 then runs in the namespace with no AWS_* endpoint variable and must get
 * the key the emulator issued for the attested instance.
 *
 * Every address and port here exists only inside namespaces this file creates; they are deleted
 * afterwards, also on failure (with /etc/netns/<name>, which gives the Tencent VM its hosts file).
 */
const run = promisify(execFile);
const NS_PREFIX = `crosscred-vm-${process.pid}`;
const VM_CHAIN = join(REPO_ROOT, 'test/e2e/vm-chain');
/** Inside each namespace, so fixed ports cannot collide with anything. */
const ISSUER_URL = 'http://127.0.0.1:8470';
const ISSUER_ADMIN_URL = 'http://127.0.0.1:8471';
const SERVE_ADMIN_URL = 'http://127.0.0.1:8171';
const IMDS_ADDRESS = '169.254.169.254';
const ROLE_ARN = roleArn('vm-app');
const TAGS_CLAIM = 'https://aws.amazon.com/tags';
const ATTESTATION_CLAIM = 'https://crosscred.dev/claims';
/** A chain's setup: namespace, three processes, credentials cached (ms). */
const SETUP_TIMEOUT_MS = 4 * START_TIMEOUT_MS;
/** One test: at most a restart of serve and two AWS CLI runs (ms). */
const TEST_TIMEOUT_MS = START_TIMEOUT_MS + 2 * COMMAND_TIMEOUT_MS;

let unavailable: string | undefined;
let shared: string | undefined;
let fakesDir = '';
let keyFile = '';
let kid = '';

beforeAll(async () => {
  unavailable = await vmChainUnavailable();
  if (unavailable) return;
  shared = await scratchDir('shared');
  fakesDir = await transpileFakes(shared);
  keyFile = join(shared, 'issuer-key.pem');
  // The operator's own step: one ES256 key, made by the CLI.
  const { stdout } = await run(CLI_EXEC, [...CLI_ARGS, 'issuer', 'keygen', '--alg', 'ES256', '--out', keyFile], { timeout: COMMAND_TIMEOUT_MS });
  kid = /^kid: (\S+)$/m.exec(stdout)![1]!;
}, SETUP_TIMEOUT_MS);

afterAll(async () => {
  if (shared) await rm(shared, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// What the helpers report (test/e2e/vm-chain/*.mjs)

interface EmulatorReport {
  readonly url: string;
  readonly requests: Array<{ roleArn: string; header: Record<string, unknown> | null; claims: Record<string, unknown> | null }>;
  readonly issued: Array<{ accessKeyId: string; roleArn: string; subject: string }>;
}

interface ChainReport {
  readonly error?: string;
  readonly emulator: EmulatorReport;
  readonly issuerRequests: Array<{ route: string; status: string; count: number }>;
}

interface AlibabaReport extends ChainReport {
  readonly metadata: Array<{ method: string; path: string; query: string; token: 'none' | 'valid' | 'invalid' }>;
}

interface TencentReport extends ChainReport {
  readonly metadataPaths: string[];
  readonly tencentSts: Array<{ outcome: string; host: string; audience: string; action: string; signedHeaders: string }>;
}

/** Credentials as `aws configure export-credentials --format process` prints them. */
interface CliCredentials {
  readonly Version: number;
  readonly AccessKeyId: string;
  readonly SecretAccessKey: string;
  readonly SessionToken: string;
  readonly Expiration: string;
}

async function report<T extends ChainReport>(helper: NsProcess): Promise<T> {
  helper.send('report');
  const answer = await helper.nextJson<T>((v) => v['event'] === 'report');
  if (answer.error) throw new Error(`${helper.label} could not report: ${answer.error}`);
  return answer;
}

function requestsTo(r: ChainReport, route: string): number {
  return r.issuerRequests.filter((c) => c.route === route && c.status === '200').reduce((n, c) => n + c.count, 0);
}

// ---------------------------------------------------------------------------------------------
// One VM: the namespace, its processes, and the operator's steps in it

class Vm {
  readonly ns: VmNamespace;
  readonly home: string;
  helper: NsProcess | undefined;
  serve: NsProcess | undefined;

  constructor(ns: VmNamespace, home: string) {
    this.ns = ns;
    this.home = home;
  }

  /** A helper script from test/e2e/vm-chain with its config; resolves once it printed its ready line. */
  async startHelper(script: string, config: Record<string, unknown>): Promise<Record<string, unknown>> {
    const configPath = join(this.home, `${script}.json`);
    await writeFile(configPath, JSON.stringify(config), { mode: 0o600 });
    this.helper = await this.ns.start(script, process.execPath, [join(VM_CHAIN, script), configPath], vmEnv(this.home), /"event":"ready"/);
    return this.helper.nextJson((v) => v['event'] === 'ready');
  }

  /** `crosscred issuer serve --config`, with the policy and attestor settings given. */
  async startIssuer(settings: Record<string, unknown>): Promise<NsProcess> {
    const configPath = join(this.home, 'issuer.yaml');
    const config = {
      publicUrl: ISSUER_URL,
      listen: new URL(ISSUER_URL).host,
      adminListen: new URL(ISSUER_ADMIN_URL).host,
      keys: [{ file: keyFile, active: true }],
      audiences: [AUDIENCE],
      ...settings,
    };
    await writeFile(configPath, stringify(config), { mode: 0o600 });
    return this.ns.start(
      'crosscred issuer serve',
      CLI_EXEC,
      [...CLI_ARGS, 'issuer', 'serve', '--config', configPath],
      vmEnv(this.home),
      /issuer admin listener open/,
    );
  }

  /**
   * `crosscred serve` on 169.254.169.254:80, as the systemd unit runs it, then `crosscred
   * wait-ready` (the unit's ExecStartPost): resolves once credentials are cached.
   */
  async startServe(stsUrl: string, tokenSourceArgs: string[]): Promise<NsProcess> {
    await this.serve?.stop();
    const args = [
      ...CLI_ARGS,
      'serve',
      ...tokenSourceArgs,
      '--issuer-url',
      ISSUER_URL,
      '--role-arn',
      ROLE_ARN,
      '--sts-endpoint',
      stsUrl,
      '--region',
      'us-east-1',
      '--listen',
      `${IMDS_ADDRESS}:80`,
      '--admin-listen',
      new URL(SERVE_ADMIN_URL).host,
    ];
    const serve = await this.ns.start('crosscred serve', CLI_EXEC, args, vmEnv(this.home), /credential listener open/);
    this.serve = serve;
    await this.ns
      .run(CLI_EXEC, [...CLI_ARGS, 'wait-ready', '--admin', SERVE_ADMIN_URL, '--timeout-ms', String(START_TIMEOUT_MS)], vmEnv(this.home))
      .catch((err: Error) => {
        throw new Error(`crosscred serve did not become ready: ${err.message}\n--- serve:\n${serve.output()}`);
      });
    return serve;
  }

  /** The unmodified AWS CLI v2 in the VM, no AWS_* endpoint variable: it finds IMDS by itself. */
  async awsCli(): Promise<CliCredentials> {
    const stdout = await this.ns.run(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--format', 'process'], vmEnv(this.home));
    return JSON.parse(stdout) as CliCredentials;
  }

  async close(): Promise<void> {
    await this.ns.close();
    await rm(this.home, { recursive: true, force: true });
  }
}

async function makeVm(tag: string, options: { addresses: readonly string[]; hosts?: string }): Promise<Vm> {
  const home = await scratchDir(tag);
  try {
    return new Vm(await VmNamespace.create(`${NS_PREFIX}-${tag}`, options), home);
  } catch (err) {
    await rm(home, { recursive: true, force: true });
    throw err;
  }
}

/** The checks common to both clouds: the CLI's key is the one STS issued, for a token from this issuer found by discovery. */
function expectIssuedThroughDiscovery(r: ChainReport, cli: CliCredentials, subject: string, index: number): Record<string, unknown> {
  expect(cli.Version).toBe(1);
  expect(cli.AccessKeyId).toMatch(/^ASIA/);
  expect(Date.parse(cli.Expiration)).toBeGreaterThan(Date.now());
  expect(r.emulator.issued).toHaveLength(index + 1);
  expect(r.emulator.issued[index]).toMatchObject({ accessKeyId: cli.AccessKeyId, roleArn: ROLE_ARN, subject });
  const request = r.emulator.requests[index]!;
  expect(request.header).toMatchObject({ alg: 'ES256', kid });
  const claims = request.claims!;
  expect(claims['iss']).toBe(ISSUER_URL);
  expect(claims['sub']).toBe(subject);
  expect([claims['aud']].flat()).toEqual([AUDIENCE]);
  expect(claims['jti']).toEqual(expect.any(String));
  // The emulator knew only the issuer URL: it read the discovery document, then the JWKS it
  // names. Nothing else in the VM reads either (serve posts to /token only); keys are cached.
  expect(requestsTo(r, '/.well-known/openid-configuration')).toBe(1);
  expect(requestsTo(r, '/.well-known/jwks.json')).toBeGreaterThanOrEqual(1);
  expect(requestsTo(r, '/token')).toBe(index + 1);
  return claims;
}

// ---------------------------------------------------------------------------------------------

describe('alibaba-ecs: ECS metadata → crosscred issuer → STS (discovery) → IMDS → the AWS CLI v2, in a VM stand-in', () => {
  const instance = sampleInstance();
  const subject = `alibaba-ecs:${instance.accountId}:${instance.regionId}:${instance.instanceId}`;
  let vm: Vm | undefined;
  let ca: SigningCa | undefined;
  let stsUrl = '';

  beforeAll(async () => {
    if (unavailable) return;
    ca = await makeSigningCa('vm-chain');
    vm = await makeVm('ecs', { addresses: ['100.100.100.200', IMDS_ADDRESS] });
    const ready = await vm.startHelper('alibaba-cloud.mjs', {
      fakesDir,
      distDir: join(REPO_ROOT, 'dist'),
      signer: { dir: ca.dir, signerCertPath: ca.signerCertPath, signerKeyPath: ca.signerKeyPath, caPath: ca.caPath },
      instance,
      trust: { roleArn: ROLE_ARN, issuer: ISSUER_URL, audience: AUDIENCE, subject },
      issuerAdminUrl: ISSUER_ADMIN_URL,
    });
    stsUrl = ready['sts'] as string;
    await vm.startIssuer({
      attestors: { alibabaEcsIdentity: { signingCertificateFiles: [ca.signerCertPath] } },
      policy: {
        alibabaEcsIdentity: {
          accounts: [instance.accountId],
          regions: [instance.regionId],
          instanceIds: [instance.instanceId],
          sessionTags: { 'ecs-instance': 'instanceId', 'ecs-zone': 'attribute:zone-id' },
        },
      },
    });
    await vm.startServe(stsUrl, ['--token-source', 'alibaba-ecs']);
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await vm?.close();
    await ca?.close();
  });

  it(
    '--token-source alibaba-ecs: the CLI gets the key STS issued for alibaba-ecs:<account>:<region>:<instance>',
    async (ctx) => {
      if (unavailable) ctx.skip(unavailable);
      const cli = await vm!.awsCli();
      const r = await report<AlibabaReport>(vm!.helper!);
      const claims = expectIssuedThroughDiscovery(r, cli, subject, 0);
      expect(claims[TAGS_CLAIM]).toEqual({ principal_tags: { 'ecs-instance': [instance.instanceId], 'ecs-zone': [instance.zoneId] } });
      expect(claims[ATTESTATION_CLAIM]).toMatchObject({
        cloud: 'alibaba',
        account_id: instance.accountId,
        region: instance.regionId,
        instance_id: instance.instanceId,
      });
      // Token mode throughout, and the PKCS#7 was asked for with an audience naming this issuer.
      // First the source's one token-less probe (HttpTokens=required here: refused, so no warning).
      expect(r.metadata.map((m) => `${m.method} ${m.path} ${m.token}`)).toEqual([
        'GET /latest/meta-data/instance-id none',
        'PUT /latest/api/token none',
        'GET /latest/dynamic/instance-identity/document valid',
        'GET /latest/dynamic/instance-identity/pkcs7 valid',
      ]);
      expect(vm!.serve!.output()).not.toContain('ALIBABA_METADATA_TOKENS_OPTIONAL');
      const audience = JSON.parse(new URLSearchParams(r.metadata[3]!.query).get('audience')!) as { aud: string; signingTime: number };
      expect(audience.aud).toBe(ISSUER_URL);
      expect(Math.abs(audience.signingTime - Date.now() / 1000)).toBeLessThan(120);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    '--token-source auto with --issuer-url: detects ECS by its metadata server and runs the same chain',
    async (ctx) => {
      if (unavailable) ctx.skip(unavailable);
      const serve = await vm!.startServe(stsUrl, ['--token-source', 'auto']);
      expect(serve.output()).toMatch(/told by which metadata server answers at the first fetch/);
      const cli = await vm!.awsCli();
      const r = await report<AlibabaReport>(vm!.helper!);
      expectIssuedThroughDiscovery(r, cli, subject, 1);
      expect(r.emulator.issued[1]!.accessKeyId).not.toBe(r.emulator.issued[0]!.accessKeyId);
      expect(r.emulator.requests[1]!.claims!['jti']).not.toBe(r.emulator.requests[0]!.claims!['jti']);
      // Detection is the token PUT, answered 200; then the source's probe, its own session and attestation.
      expect(r.metadata.slice(4).map((m) => `${m.method} ${m.path}`)).toEqual([
        'PUT /latest/api/token',
        'GET /latest/meta-data/instance-id',
        'PUT /latest/api/token',
        'GET /latest/dynamic/instance-identity/document',
        'GET /latest/dynamic/instance-identity/pkcs7',
      ]);
    },
    TEST_TIMEOUT_MS,
  );
  it(
    'with HttpTokens=optional, serve logs one warning with the fix at start-up and still serves',
    async (ctx) => {
      if (unavailable) ctx.skip(unavailable);
      vm!.helper!.send('tokens-optional');
      await vm!.helper!.nextJson((v) => v['event'] === 'tokens-optional');
      try {
        const serve = await vm!.startServe(stsUrl, ['--token-source', 'alibaba-ecs']);
        // Logged before the first attestation, so before wait-ready returned; the pipe may lag behind.
        const deadline = Date.now() + 10_000;
        while (!serve.output().includes('ALIBABA_METADATA_TOKENS_OPTIONAL') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        const warnings = serve
          .output()
          .split('\n')
          .filter((l) => l.includes('ALIBABA_METADATA_TOKENS_OPTIONAL'));
        expect(warnings).toHaveLength(1);
        const line = JSON.parse(warnings[0]!) as { level: string; msg: string; fix: string };
        expect(line).toMatchObject({ level: 'warn', msg: expect.stringContaining('HttpTokens=optional') });
        expect(line.fix).toContain(`ModifyInstanceMetadataOptions --RegionId <region> --InstanceId ${instance.instanceId} --HttpTokens required`);
        const cli = await vm!.awsCli();
        expect(cli.AccessKeyId).toMatch(/^ASIA/);
      } finally {
        vm!.helper!.send('tokens-required');
        await vm!.helper!.nextJson((v) => v['event'] === 'tokens-required');
      }
    },
    TEST_TIMEOUT_MS,
  );
});

describe('tencent-cvm: CVM metadata → crosscred issuer → Tencent STS → STS (discovery) → IMDS → the AWS CLI v2, in a VM stand-in', () => {
  const role = { uin: '100012345678', roleId: '4611686018427397919', roleName: 'cvm-app' };
  const subject = `tencent-cam:${role.uin}:role/${role.roleId}`;
  const metadataAddress = '169.254.0.23';
  let vm: Vm | undefined;
  let stsUrl = '';

  beforeAll(async () => {
    if (unavailable) return;
    vm = await makeVm('cvm', {
      addresses: [metadataAddress, IMDS_ADDRESS],
      // The names the SDK and the source use; sts.tencentcloudapi.com is the TLS front in the helper.
      hosts: `127.0.0.1 localhost\n::1 localhost\n${metadataAddress} metadata.tencentyun.com\n127.0.0.1 sts.tencentcloudapi.com\n`,
    });
    const tls = await makeServingCertificate(vm.home, 'sts.tencentcloudapi.com');
    const ready = await vm.startHelper('tencent-cloud.mjs', {
      fakesDir,
      distDir: join(REPO_ROOT, 'dist'),
      role,
      instanceId: 'ins-0vmchain1',
      region: 'ap-guangzhou',
      metadataAddress,
      tls: { certPath: tls.certPath, keyPath: tls.keyPath },
      trust: { roleArn: ROLE_ARN, issuer: ISSUER_URL, audience: AUDIENCE, subject },
      issuerAdminUrl: ISSUER_ADMIN_URL,
    });
    stsUrl = ready['sts'] as string;
    await vm.startIssuer({
      // The official endpoint, over HTTPS, trusted through the test CA: no extraStsEndpoints.
      caBundleFile: tls.caPath,
      attestors: { tencentCamRole: {} },
      policy: { tencentCamRole: { accounts: [role.uin], roles: [role.roleId], instanceIds: ['*'], sessionTags: { 'cvm-role': 'roleId' } } },
    });
    await vm.startServe(stsUrl, ['--token-source', 'tencent-cvm']);
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await vm?.close();
  });

  it(
    '--token-source tencent-cvm: the CLI gets the key STS issued for tencent-cam:<uin>:role/<role-id>',
    async (ctx) => {
      if (unavailable) ctx.skip(unavailable);
      const cli = await vm!.awsCli();
      const r = await report<TencentReport>(vm!.helper!);
      const claims = expectIssuedThroughDiscovery(r, cli, subject, 0);
      expect(claims[TAGS_CLAIM]).toEqual({ principal_tags: { 'cvm-role': [role.roleId] } });
      expect(claims[ATTESTATION_CLAIM]).toMatchObject({ cloud: 'tencent', account_id: role.uin, role_id: role.roleId });
      // The role key came from metadata.tencentyun.com through the SDK…
      expect(r.metadataPaths).toEqual(['/latest/meta-data/cam/security-credentials/', `/latest/meta-data/cam/security-credentials/${role.roleName}`]);
      // …and the issuer replayed the signed GetCallerIdentity, bound to it, to the official host.
      expect(r.tencentSts).toHaveLength(1);
      expect(r.tencentSts[0]).toMatchObject({ outcome: 'ok', host: 'sts.tencentcloudapi.com', audience: ISSUER_URL, action: 'GetCallerIdentity' });
      expect(r.tencentSts[0]!.signedHeaders.split(';')).toEqual(expect.arrayContaining(['host', 'x-crosscred-audience', 'x-tc-action']));
    },
    TEST_TIMEOUT_MS,
  );

  it(
    '--token-source auto with --issuer-url: detects CVM by metadata.tencentyun.com and runs the same chain',
    async (ctx) => {
      if (unavailable) ctx.skip(unavailable);
      const serve = await vm!.startServe(stsUrl, ['--token-source', 'auto']);
      expect(serve.output()).toMatch(/told by which metadata server answers at the first fetch/);
      const cli = await vm!.awsCli();
      const r = await report<TencentReport>(vm!.helper!);
      expectIssuedThroughDiscovery(r, cli, subject, 1);
      expect(r.emulator.issued[1]!.accessKeyId).not.toBe(r.emulator.issued[0]!.accessKeyId);
      // No ECS metadata server here (100.100.100.200 is unreachable), so the probe of Tencent's decided.
      expect(r.metadataPaths.slice(2)).toEqual([
        '/latest/meta-data/instance-id',
        '/latest/meta-data/cam/security-credentials/',
        `/latest/meta-data/cam/security-credentials/${role.roleName}`,
      ]);
      expect(r.tencentSts.map((s) => s.outcome)).toEqual(['ok', 'ok']);
    },
    TEST_TIMEOUT_MS,
  );
});
