import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coreDumpLimit, coreDumpWarning } from '../../src/host/core-dumps.js';
import { CLI_ARGS, CLI_EXEC } from '../support/chain.js';

/**
 * A core dump of crosscred holds its cached credentials and tokens. The systemd units set
 * LimitCORE=0; elsewhere (a container) the daemons read the kernel's limit at start and warn. The
 * limits here are set by util-linux `prlimit` on real child processes, and read back from the
 * kernel's own /proc/<pid>/limits.
 */
const hasPrlimit = (() => {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.runIf(process.platform === 'linux' && hasPrlimit)('the core dump limit', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'crosscred-core-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  /** /proc/self/limits as the kernel writes it for a process started under `prlimit --core=LIMIT`. */
  async function limitsUnder(limit: string): Promise<string> {
    const file = join(dir, `limits-${limit.replace(/\W/g, '_')}`);
    await writeFile(file, execFileSync('prlimit', [`--core=${limit}`, 'cat', '/proc/self/limits'], { encoding: 'utf8' }));
    return file;
  }

  it('reads 0, a number of bytes and unlimited from the kernel, and warns only when dumps are allowed', async () => {
    const none = await limitsUnder('0:unlimited');
    expect(await coreDumpLimit(none)).toEqual({ soft: 0 });
    expect(await coreDumpWarning(none)).toBeUndefined();

    const some = await limitsUnder('1048576:1048576');
    expect(await coreDumpLimit(some)).toEqual({ soft: 1048576 });
    expect(await coreDumpWarning(some)).toMatch(/core dumps are allowed \(RLIMIT_CORE 1048576\)/);

    const all = await limitsUnder('unlimited:unlimited');
    expect(await coreDumpLimit(all)).toEqual({ soft: 'unlimited' });
    expect(await coreDumpWarning(all)).toMatch(/--ulimit core=0/);

    expect(await coreDumpLimit(join(dir, 'missing'))).toBeUndefined();
  });

  /** The log lines `serve` writes until its admin listener is open (the start-up checks come before it). */
  async function serveLogUnder(limit: string): Promise<Array<{ level: string; code?: string; msg: string }>> {
    const token = join(dir, 'token');
    await writeFile(token, 'not-a-jwt-yet');
    const child = spawn(
      'prlimit',
      [
        `--core=${limit}`,
        CLI_EXEC,
        ...CLI_ARGS,
        'serve',
        '--token-file',
        token,
        '--role-arn',
        'arn:aws:iam::123456789012:role/app',
        '--listen',
        '127.0.0.1:0',
        '--admin-listen',
        '127.0.0.1:0',
      ],
      {
        env: { PATH: process.env['PATH'] ?? '', HOME: dir },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const lines: Array<{ level: string; code?: string; msg: string }> = [];
    try {
      await new Promise<void>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`serve did not open its admin listener in time: ${JSON.stringify(lines)}`)), 15_000);
        let buffered = '';
        child.stdout.on('data', (chunk: Buffer) => {
          buffered += chunk.toString('utf8');
          for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
            const entry = JSON.parse(buffered.slice(0, nl)) as { level: string; code?: string; msg: string };
            buffered = buffered.slice(nl + 1);
            lines.push(entry);
            if (entry.msg.startsWith('admin listener open')) {
              clearTimeout(timer);
              done();
            }
          }
        });
        child.once('exit', (code) => fail(new Error(`serve exited with ${code}: ${JSON.stringify(lines)}`)));
      });
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('close', r));
    }
    return lines;
  }

  it('serve warns once at start when dumps are allowed, and says nothing under LimitCORE=0', async () => {
    const allowed = await serveLogUnder('unlimited:unlimited');
    const warnings = allowed.filter((l) => l.code === 'CORE_DUMPS_ALLOWED');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 'warn' });
    expect(warnings[0]!.msg).toContain('LimitCORE=0');

    const off = await serveLogUnder('0:0');
    expect(off.some((l) => l.code === 'CORE_DUMPS_ALLOWED')).toBe(false);
    expect(off.some((l) => l.msg === 'credential listener open')).toBe(true);
  });
});
