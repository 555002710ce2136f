// A fake Alibaba STS for the issuer benchmark: the GetCallerIdentity part of
// test/support/fake-alibaba-cloud.ts (FakeAlibabaSts) in plain JS. It verifies ACS3-HMAC-SHA256
// signatures with the official `OpenApiUtil.getAuthorization` of @alicloud/openapi-core against the
// keys it issued, refuses unknown keys, a token that is not the key's, stale dates, reused nonces
// and bad signatures, and answers for the key's assumed role. 127.0.0.1 only.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { OpenApiUtil } = require('@alicloud/openapi-core');
const { default: Credential, Config: CredentialConfig } = require('@alicloud/credentials');

/** Alibaba's gateway refuses an x-acs-date further than this from its clock (ms). */
const DATE_WINDOW_MS = 15 * 60_000;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const MAX_BODY_BYTES = 64 * 1024;

export async function startFakeAlibabaSts() {
  const keys = new Map();
  const nonces = new Set();
  const counts = { ok: 0, refused: 0 };
  const server = createServer((req, res) => {
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
    });
    req.on('end', () => answer(req, res, size));
  });
  const send = (res, status, body) => res.writeHead(status, { 'content-type': 'application/json;charset=utf-8' }).end(JSON.stringify(body));
  const refuse = (res, status, code) => {
    counts.refused++;
    send(res, status, { RequestId: randomBytes(16).toString('hex'), Code: code, Message: code });
  };
  function answer(req, res, size) {
    const h = (name) => (typeof req.headers[name] === 'string' ? req.headers[name] : undefined);
    if (size > MAX_BODY_BYTES || size !== 0 || req.method !== 'POST' || req.url !== '/') return refuse(res, 400, 'InvalidParameter');
    if (h('x-acs-action') !== 'GetCallerIdentity' || h('x-acs-version') !== '2015-04-01') return refuse(res, 404, 'InvalidAction.NotFound');
    const auth = /^ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]{64})$/.exec(h('authorization') ?? '');
    if (!auth) return refuse(res, 400, 'IncompleteSignature');
    const key = keys.get(auth[1]);
    if (!key) return refuse(res, 404, 'InvalidAccessKeyId.NotFound');
    if (h('x-acs-security-token') !== key.securityToken) return refuse(res, 400, 'InvalidSecurityToken.Mismatch');
    const date = Date.parse(h('x-acs-date') ?? '');
    if (!Number.isFinite(date) || Math.abs(date - Date.now()) > DATE_WINDOW_MS) return refuse(res, 400, 'InvalidTimeStamp.Expired');
    if (h('x-acs-content-sha256') !== EMPTY_SHA256) return refuse(res, 400, 'SignatureDoesNotMatch');
    const view = {};
    for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') view[name] = value;
    const expected = OpenApiUtil.getAuthorization(
      { method: 'POST', pathname: '/', query: {}, headers: view },
      'ACS3-HMAC-SHA256',
      EMPTY_SHA256,
      key.accessKeyId,
      key.accessKeySecret,
    );
    const m = /SignedHeaders=([^,]+),Signature=([0-9a-f]{64})$/.exec(expected);
    if (m[1] !== auth[2] || !timingSafeEqual(Buffer.from(auth[3], 'hex'), Buffer.from(m[2], 'hex'))) return refuse(res, 400, 'SignatureDoesNotMatch');
    const nonce = h('x-acs-signature-nonce') ?? '';
    if (nonce === '' || nonces.has(nonce)) return refuse(res, 400, 'SignatureNonceUsed');
    nonces.add(nonce);
    counts.ok++;
    const session = `vm-ram-${key.instanceId}`;
    send(res, 200, {
      RequestId: randomBytes(16).toString('hex'),
      AccountId: key.accountId,
      Arn: `acs:ram::${key.accountId}:assumed-role/${key.roleName}/${session}`,
      IdentityType: 'AssumedRoleUser',
      PrincipalId: `${key.roleId}:${session}`,
      RoleId: key.roleId,
    });
  }
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return {
    url,
    counts,
    /** Temporary credentials of an instance's RAM role, as an official SDK Credential of type sts. */
    issueRoleCredential({ accountId, roleName, instanceId }) {
      const key = {
        accessKeyId: `STS.${randomBytes(12).toString('hex')}`,
        accessKeySecret: randomBytes(24).toString('base64'),
        securityToken: `CAIS${randomBytes(96).toString('base64')}`,
        accountId,
        roleName,
        instanceId,
        roleId: `3${String(randomBytes(8).readBigUInt64BE() % 10n ** 17n)}`,
      };
      keys.set(key.accessKeyId, key);
      return new Credential(
        new CredentialConfig({ type: 'sts', accessKeyId: key.accessKeyId, accessKeySecret: key.accessKeySecret, securityToken: key.securityToken }),
      );
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}
