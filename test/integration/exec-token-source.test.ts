import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { CrosscredError } from '../../src/core/errors.js';
import { ExecTokenSource } from '../../src/sources/exec-token-source.js';

/** Real programs (node scripts with a shebang, run without a shell) printing tokens or failing. */
let dir: string;
let jwt: string;
const expSeconds = Math.floor(Date.now() / 1000) + 3600;

async function program(name: string, body: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `#!${process.execPath}\n${body}\n`);
  await chmod(path, 0o755);
  return path;
}

async function failure(source: ExecTokenSource): Promise<CrosscredError> {
  try {
    await source.getToken();
  } catch (err) {
    expect(err).toBeInstanceOf(CrosscredError);
    expect((err as CrosscredError).code).toBe('CROSSCRED_ERR_TOKEN_COMMAND_FAILED');
    return err as CrosscredError;
  }
  throw new Error('the command was accepted');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'crosscred-exec-'));
  const { privateKey } = await generateKeyPair('ES256');
  jwt = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: 'k' })
    .setIssuer('https://issuer.example')
    .setSubject('vm:i-123')
    .setAudience('sts.amazonaws.com')
    .setExpirationTime(expSeconds)
    .sign(privateKey);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('exec token source', () => {
  it('takes a bare JWT from stdout, trimmed, and passes arguments without a shell', async () => {
    const path = await program(
      'print-token',
      `if (process.argv[2] !== 'a b;c' || process.argv[3] !== '$HOME') process.exit(3); process.stdout.write('\\n ${jwt}\\n');`,
    );
    const token = await new ExecTokenSource([path, 'a b;c', '$HOME'], 5000, systemClock).getToken();
    expect(token.token).toBe(jwt);
    expect(token.expiresAtWall).toBe(expSeconds * 1000);
    expect(token.claims).toMatchObject({ iss: 'https://issuer.example', sub: 'vm:i-123' });
  });

  it('takes JSON {token, expiration} and keeps the earlier of the two expiries', async () => {
    const early = new Date(Date.now() + 600_000).toISOString();
    const iso = await program('json-iso', `console.log(JSON.stringify({ token: ${JSON.stringify(jwt)}, expiration: ${JSON.stringify(early)} }))`);
    expect((await new ExecTokenSource([iso], 5000, systemClock).getToken()).expiresAtWall).toBe(Date.parse(early));
    const late = await program('json-epoch', `console.log(JSON.stringify({ token: ${JSON.stringify(jwt)}, expiration: ${expSeconds + 9999} }))`);
    expect((await new ExecTokenSource([late], 5000, systemClock).getToken()).expiresAtWall).toBe(expSeconds * 1000);
  });

  it('names the command on a non-zero exit and hands its stderr, masked, to the debug sink only', async () => {
    const path = await program('fail', `process.stderr.write('cannot reach the metadata server\\nleaked ${jwt}\\n'); process.exit(7);`);
    const seen: string[] = [];
    const err = await failure(new ExecTokenSource([path], 5000, systemClock, { onStderr: (t) => seen.push(t) }));
    expect(err.message).toContain('token command fail exited with code 7');
    expect(err.message).toContain('its stderr is logged at debug level');
    expect(err.message).not.toContain('cannot reach the metadata server');
    expect(seen).toEqual(['cannot reach the metadata server leaked [jwt]']);
  });

  it("keeps a vendor CLI's secrets on stderr out of the error and masks them for the debug sink", async () => {
    const secrets = ['r3fr3sh-S3CRET', 'cl13nt-S3CRET', 'b34rer-S3CRET', 'pr0xy-S3CRET', jwt.split('.')[1]!];
    const path = await program(
      'vendor-cli',
      `process.stderr.write('POST /oauth/token grant_type=refresh_token&refresh_token=r3fr3sh-S3CRET&client_secret=cl13nt-S3CRET\\n' +
        'Authorization: Bearer b34rer-S3CRET\\nproxy https://me:pr0xy-S3CRET@proxy:3128 id_token ${jwt}\\n'); process.exit(2);`,
    );
    const seen: string[] = [];
    const err = await failure(new ExecTokenSource([path], 5000, systemClock, { onStderr: (t) => seen.push(t) }));
    for (const secret of secrets) expect(err.message).not.toContain(secret);
    expect(seen).toHaveLength(1);
    for (const secret of secrets) expect(seen[0]).not.toContain(secret);
    expect(seen[0]).toContain('refresh_token=[redacted]&client_secret=[redacted]');
    expect(seen[0]).toContain('Bearer [redacted]');
  });

  it('hands stderr to the sink on success too, and says nothing when there was none', async () => {
    const chatty = await program('chatty', `console.error('using profile default'); console.log(${JSON.stringify(jwt)});`);
    const seen: string[] = [];
    await new ExecTokenSource([chatty], 5000, systemClock, { onStderr: (t) => seen.push(t) }).getToken();
    expect(seen).toEqual(['using profile default']);
    const quiet = await program('quiet', `console.log(${JSON.stringify(jwt)});`);
    await new ExecTokenSource([quiet], 5000, systemClock, { onStderr: (t) => seen.push(t) }).getToken();
    expect(seen).toHaveLength(1);
  });

  it('kills a command that hangs past the time limit', async () => {
    const path = await program('hang', 'setInterval(() => {}, 1000);');
    const err = await failure(new ExecTokenSource([path], 300, systemClock));
    expect(err.message).toContain('did not finish within 300 ms');
  });

  it('kills what the command started too, and does not wait for it', async () => {
    const pidFile = join(dir, 'grandchild.pid');
    // A script whose own child holds stdout open far longer than the limit, as `sh -c 'sleep 60'` would.
    const path = await program(
      'spawns',
      `const { spawn } = require('node:child_process'); const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'inherit' }); require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(c.pid));`,
    );
    // Not a timing assertion: if the grandchild were waited for, this would outlast the test's own 30 s limit.
    const err = await failure(new ExecTokenSource([path], 500, systemClock));
    expect(err.message).toContain('did not finish within 500 ms');
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    await new Promise((r) => setTimeout(r, 100));
    // Gone, or a zombie waiting for whoever inherited it to reap it: either way it no longer runs.
    const state = await readFile(`/proc/${grandchild}/status`, 'utf8').then(
      (t) => /^State:\s+(\S)/m.exec(t)?.[1],
      () => 'gone',
    );
    expect(['gone', 'Z']).toContain(state);
  });

  it('stops a command that prints too much', async () => {
    const path = await program('flood', "const chunk = 'x'.repeat(65536); const write = () => process.stdout.write(chunk, write); write();");
    const err = await failure(new ExecTokenSource([path], 5000, systemClock));
    expect(err.message).toMatch(/printed more than \d+ bytes/);
  });

  it('refuses garbage and JSON without a token, naming the command and not quoting its stderr', async () => {
    const garbage = await program('garbage', "console.log('hello, I am not a token'); console.error('warning: using the fallback profile')");
    const err = await failure(new ExecTokenSource([garbage], 5000, systemClock));
    expect(err.message).toContain('token command garbage printed no usable token');
    expect(err.message).not.toContain('fallback profile');
    expect(err.message).toContain('its stderr is logged at debug level');
    const noToken = await program('no-token', "console.log(JSON.stringify({ access_token: 'x' }))");
    expect((await failure(new ExecTokenSource([noToken], 5000, systemClock))).message).toContain('without a string "token" field');
    const badExp = await program('bad-exp', `console.log(JSON.stringify({ token: ${JSON.stringify(jwt)}, expiration: 'soon' }))`);
    expect((await failure(new ExecTokenSource([badExp], 5000, systemClock))).message).toContain('"expiration"');
  });

  it('gives the command PATH, HOME and the passed variables only, not the daemon environment', async () => {
    // Prints the token only when its environment is exactly the expected one; otherwise says which names it got.
    const path = await program(
      'env-check',
      `const names = Object.keys(process.env).sort().join(','); if (names !== 'HOME,PATH,VENDOR_PROFILE' || process.env.VENDOR_PROFILE !== 'prod') {` +
        ` process.stderr.write(names); process.exit(4); } console.log(${JSON.stringify(jwt)});`,
    );
    const parentEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: '/home/app',
      HTTPS_PROXY: 'http://me:pr0xy-S3CRET@proxy:3128',
      AWS_SECRET_ACCESS_KEY: 'not-for-the-command',
      VENDOR_PROFILE: 'prod',
    };
    const source = new ExecTokenSource([path], 5000, systemClock, { parentEnv, passEnv: ['VENDOR_PROFILE', 'NOT_SET_ANYWHERE'] });
    expect((await source.getToken()).token).toBe(jwt);
  });

  it("does not hand the daemon's own process.env to the command by default", async () => {
    const path = await program(
      'env-default',
      `if (process.env.CROSSCRED_TEST_PROXY_PASSWORD !== undefined) process.exit(5); console.log(${JSON.stringify(jwt)});`,
    );
    process.env.CROSSCRED_TEST_PROXY_PASSWORD = 'pr0xy-S3CRET';
    try {
      expect((await new ExecTokenSource([path], 5000, systemClock).getToken()).token).toBe(jwt);
    } finally {
      delete process.env.CROSSCRED_TEST_PROXY_PASSWORD;
    }
  });

  it('says when the program cannot be started', async () => {
    const err = await failure(new ExecTokenSource([join(dir, 'does-not-exist')], 5000, systemClock));
    expect(err.message).toContain('could not be started (ENOENT)');
  });
});
