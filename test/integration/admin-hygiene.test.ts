import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Chain, type InProcessDaemon, startChain, startInProcess } from '../support/chain.js';

/**
 * Issue #11 item 10: a vendor CLI used as the token command fails and prints its OAuth exchange on
 * stderr. /readyz says what failed without quoting it, no log line above debug carries stderr, the
 * debug line carries it masked, and the admin listener refuses a foreign Host as the credential
 * listeners do.
 */
const SECRETS = ['r3fr3sh-S3CRET', 'cl13nt-S3CRET', 'b34rer-S3CRET'];

let chain: Chain;
let d: InProcessDaemon;
let dir: string;

beforeAll(async () => {
  chain = await startChain();
  dir = await mkdtemp(join(tmpdir(), 'crosscred-admin-'));
  const cli = join(dir, 'vendor-cli');
  const stderr = 'POST /oauth/token refresh_token=r3fr3sh-S3CRET&client_secret=cl13nt-S3CRET\\nAuthorization: Bearer b34rer-S3CRET\\n';
  await writeFile(cli, `#!${process.execPath}\nprocess.stderr.write('${stderr}'); process.exit(1);\n`);
  await chmod(cli, 0o755);
  d = await startInProcess(chain, { 'token-file': undefined, 'token-command': cli });
  await d.daemon.firstFetch;
});
afterAll(async () => {
  await d?.close();
  await chain?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('/readyz and a token command that fails', () => {
  it('says what failed (kind, code, hint) without quoting the message or stderr', async () => {
    const res = await request(`${d.admin}/readyz`);
    expect(res.statusCode).toBe(503);
    const text = await res.body.text();
    for (const secret of SECRETS) expect(text).not.toContain(secret);
    expect(text).not.toContain('oauth');
    const body = JSON.parse(text) as { roles: Array<{ lastError: Record<string, string> | null }> };
    const failure = body.roles[0]!.lastError!;
    expect(failure.code).toBe('CROSSCRED_ERR_TOKEN_COMMAND_FAILED');
    expect(failure.hint).toContain('run the --token-command by hand');
    expect(failure).not.toHaveProperty('message');
  });

  it('logs stderr at debug level only, masked, and no line carries a secret', () => {
    expect(d.logs.length).toBeGreaterThan(0);
    for (const line of d.logs) for (const secret of SECRETS) expect(line).not.toContain(secret);
    const stderrLines = d.logs.map((l) => JSON.parse(l) as { level: string; stderr?: string }).filter((l) => l.stderr !== undefined);
    expect(stderrLines.length).toBeGreaterThan(0);
    for (const line of stderrLines) {
      expect(line.level).toBe('debug');
      expect(line.stderr).toContain('refresh_token=[redacted]&client_secret=[redacted]');
    }
  });
});

describe('the admin listener Host guard', () => {
  it.each(['/healthz', '/readyz', '/metrics'])('refuses %s for a foreign Host with 403 HOST_FORBIDDEN', async (path) => {
    const res = await request(`${d.admin}${path}`, { headers: { host: 'rebind.attacker.example' } });
    expect(res.statusCode).toBe(403);
    expect(await res.body.text()).toContain('CROSSCRED_ERR_HOST_FORBIDDEN');
  });

  it('answers its own address and localhost', async () => {
    const port = new URL(d.admin).port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
      const res = await request(`${d.admin}/healthz`, { headers: { host } });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
  });
});
