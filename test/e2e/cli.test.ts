import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { SERVE_OPTIONS } from '../../src/cli/serve-options.js';
import { crosscred } from '../support/run-cli.js';

describe('crosscred command line', () => {
  it('explains every command in --help', async () => {
    const { code, stdout } = await crosscred(['--help']);
    expect(code).toBe(0);
    for (const command of ['serve', 'credential-process', 'demo']) expect(stdout).toContain(command);
  });

  it('lists --version in --help, and --version prints the package version', async () => {
    const help = await crosscred(['--help']);
    expect(help.stdout).toMatch(/^\s+--version\s/m);
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const { code, stdout } = await crosscred(['--version']);
    expect(code).toBe(0);
    expect(stdout).toBe(`${version}\n`);
  });

  it('documents every serve option in serve --help', async () => {
    const { code, stdout } = await crosscred(['serve', '--help']);
    expect(code).toBe(0);
    for (const option of Object.keys(SERVE_OPTIONS)) expect(stdout, option).toContain(`--${option}`);
  });

  it('refuses an unknown option with exit code 2', async () => {
    const { code, stderr } = await crosscred(['serve', '--rolearn', 'x']);
    expect(code).toBe(2);
    expect(stderr).toContain('--rolearn');
  });

  it('stops on invalid configuration with exit code 78 and a coded message naming every bad field and its origin', async () => {
    const { code, stderr } = await crosscred(['serve', '--duration-seconds', '60', '--listen', 'nonsense', '--sts-endpoint', 'http://sts.example'], {
      AWS_ROLE_ARN: 'arn:aws:iam::12:role/x',
      AWS_WEB_IDENTITY_TOKEN_FILE: '/tmp/t',
    });
    expect(code).toBe(78);
    expect(stderr).toContain('CROSSCRED_ERR_CONFIG_INVALID');
    expect(stderr).toMatch(/roleArn \(env AWS_ROLE_ARN\)/);
    expect(stderr).toMatch(/durationSeconds \(--duration-seconds\)/);
    expect(stderr).toMatch(/stsEndpoint \(--sts-endpoint\): .*must use https/);
    expect(stderr).toMatch(/listen \(--listen\)/);
  });

  it('runs the README demo chain end to end (demo --check)', async () => {
    const { code, stdout, stderr } = await crosscred(
      ['demo', '--check', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--log-level', 'warn'],
      {},
      30_000,
    );
    expect(stderr).not.toContain('"level":"error"');
    expect(code).toBe(0);
    expect(stdout).toContain('export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:');
    expect(stdout).toContain('export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:');
    expect(stdout).toContain('Self-check passed');
  });

  it('demo --check does not say it is running as it exits, and ends saying it stopped', async () => {
    const { code, stdout } = await crosscred(['demo', '--check', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], {}, 30_000);
    expect(code).toBe(0);
    expect(stdout).not.toMatch(/is running/i);
    expect(stdout).not.toContain('Ctrl-C');
    expect(stdout.trimEnd().split('\n').at(-1)).toMatch(/stopped/);
  });

  it("demo keeps the daemon's JSON log lines out of its text unless --log-level asks for them", async () => {
    const args = ['demo', '--check', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'];
    const quiet = await crosscred(args, {}, 30_000);
    expect(quiet.code).toBe(0);
    expect(`${quiet.stdout}${quiet.stderr}`).not.toMatch(/^\{/m);
    // The same run with --log-level info shows them, on stderr: the check above can see them.
    const verbose = await crosscred([...args, '--log-level', 'info'], {}, 30_000);
    expect(verbose.code).toBe(0);
    expect(verbose.stderr).toMatch(/^\{.*"msg":"credentials refreshed"/m);
    expect(verbose.stdout).not.toMatch(/^\{/m);
  });
});

describe('crosscred wait-ready', () => {
  it('gives up as soon as the daemon named by --main-pid has exited, not at --timeout-ms', async () => {
    // A process that has certainly exited: its id is free (reuse within this test is not plausible).
    const gone = spawnSync(process.execPath, ['-e', '0']).pid;
    // Nothing listens on port 9: without --main-pid this would poll for the whole minute.
    const started = Date.now();
    const { code, stderr } = await crosscred(['wait-ready', '--admin', 'http://127.0.0.1:9', '--timeout-ms', '60000', '--main-pid', String(gone)]);
    expect(code).toBe(1);
    expect(stderr).toContain(`the daemon (pid ${gone}) exited before http://127.0.0.1:9/readyz was ready`);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect((await crosscred(['wait-ready', '--main-pid', '1'])).code).toBe(2);
  });
});

describe('crosscred serve ignores the AWS SDK settings meant for applications', () => {
  it('exchanges normally with AWS_DEFAULTS_MODE, AWS_RETRY_MODE and FIPS/dual-stack variables set to anything', async () => {
    const { startChain, spawnDaemon, waitUntilReady, roleArn } = await import('../support/chain.js');
    const chain = await startChain();
    const daemon = await spawnDaemon(
      ['--listen', '127.0.0.1:0', '--role-arn', roleArn('app'), '--token-file', chain.tokenFile, '--region', 'us-east-1', '--sts-endpoint', chain.sts.url],
      {
        AWS_DEFAULTS_MODE: 'bogus',
        AWS_RETRY_MODE: 'bogus',
        AWS_USE_FIPS_ENDPOINT: 'true',
        AWS_USE_DUALSTACK_ENDPOINT: 'true',
        AWS_EC2_METADATA_DISABLED: 'false',
      },
    );
    try {
      await waitUntilReady(daemon.admin);
      expect(chain.sts.calls).toBe(1);
      // The AWS SDK resolves some of these lazily; with its own HTTP handler an invalid
      // AWS_DEFAULTS_MODE surfaces late as an unhandled rejection that ends the process. crosscred
      // uses its own transport and pins these settings (src/exchange/aws-web-identity-exchange.ts); this checks
      // the outcome, whichever of the two provides it.
      await new Promise((r) => setTimeout(r, 1500));
      expect(daemon.child.exitCode).toBeNull();
      expect(daemon.output.join('\n')).not.toMatch(/Invalid parameter|unhandled/i);
    } finally {
      expect(await daemon.stop()).toBe(0);
      await chain.close();
    }
  });
});

/** A loopback port held open by this test, so that crosscred finds it taken. */
async function takenPort<T>(use: (port: number) => Promise<T>): Promise<T> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await use((server.address() as AddressInfo).port);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('a port already in use is reported as the cause, alone', () => {
  it('demo: the listen error comes first, with no STS failure before or after it', async () => {
    const { code, stdout, stderr } = await takenPort((port) =>
      crosscred(['demo', '--listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0'], {}, 30_000),
    );
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.split('\n')[0]).toMatch(/^crosscred demo: CROSSCRED_ERR_LISTEN_FAILED: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\)/);
    expect(stderr).not.toMatch(/STS|"level":"(error|warn)"/);
  });

  it('serve: the listen error, and no exchange begun (none at STS, none failed in the log)', async () => {
    const { startChain, roleArn } = await import('../support/chain.js');
    const chain = await startChain();
    try {
      const { code, stdout, stderr } = await takenPort((port) =>
        crosscred([
          'serve',
          '--listen',
          `127.0.0.1:${port}`,
          '--admin-listen',
          '127.0.0.1:0',
          '--role-arn',
          roleArn('app'),
          '--token-file',
          chain.tokenFile,
          '--region',
          'us-east-1',
          '--sts-endpoint',
          chain.sts.url,
        ]),
      );
      expect(code).toBe(1);
      expect(stderr).toMatch(/^crosscred serve: CROSSCRED_ERR_LISTEN_FAILED: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\)/);
      expect(stdout).not.toMatch(/STS could not be reached|"level":"(error|warn)"/);
      expect(chain.sts.calls).toBe(0);
    } finally {
      await chain.close();
    }
  });
});

describe('serve without a role', () => {
  it('shows the one-role way (--role-arn) first and the several-roles syntax second', async () => {
    const { code, stderr } = await crosscred(['serve']);
    expect(code).toBe(78);
    expect(stderr).toContain('CROSSCRED_ERR_CONFIG_INVALID');
    const oneRole = stderr.indexOf('--role-arn');
    const severalRoles = stderr.indexOf('ADDRESS=ROLE');
    expect(oneRole).toBeGreaterThan(0);
    expect(severalRoles).toBeGreaterThan(oneRole);
    // Not the listener's "with several roles, write ADDRESS=ROLE", which only follows from having none.
    expect(stderr).not.toContain('serves no role');
  });

  it('still lists every other problem', async () => {
    const { code, stderr } = await crosscred(['serve', '--listen', 'nonsense']);
    expect(code).toBe(78);
    expect(stderr.indexOf('--role-arn')).toBeLessThan(stderr.indexOf('listen (--listen)'));
    expect(stderr).toMatch(/listen \(--listen\): "nonsense"/);
  });

  it('keeps the usual report when a role is given but something else is wrong', async () => {
    const { code, stderr } = await crosscred(['serve', '--listen', 'nonsense'], {
      AWS_ROLE_ARN: 'arn:aws:iam::111122223333:role/x',
      AWS_WEB_IDENTITY_TOKEN_FILE: '/tmp/t',
    });
    expect(code).toBe(78);
    expect(stderr).not.toContain('no role to assume');
    expect(stderr).toMatch(/listen \(--listen\): "nonsense"/);
  });
});
