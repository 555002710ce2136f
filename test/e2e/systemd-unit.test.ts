import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/chain.js';
import { clientAvailable } from '../support/clients.js';

/**
 * systemd/crosscred.service as systemd itself reads it: `systemd-analyze verify` in a scratch root
 * holding the unit, its environment file, the system's own units and the binary's path, and
 * `systemd-analyze security` for the sandbox's exposure score.
 */
const run = promisify(execFile);
let available = false;
let root: string;

beforeAll(async () => {
  available = await clientAvailable('systemd-analyze', ['--version']);
  if (!available) return;
  root = await mkdtemp(join(tmpdir(), 'crosscred-systemd-'));
  await mkdir(join(root, 'usr/local/bin'), { recursive: true });
  await mkdir(join(root, 'etc/systemd/system'), { recursive: true });
  await mkdir(join(root, 'etc/crosscred'), { recursive: true });
  await mkdir(join(root, 'usr/lib/systemd'), { recursive: true });
  await writeFile(join(root, 'usr/local/bin/crosscred'), '#!/bin/sh\n');
  await chmod(join(root, 'usr/local/bin/crosscred'), 0o755);
  // ExecReload's /bin/kill: any Debian or RHEL host has it; verify checks that it exists.
  await mkdir(join(root, 'bin'), { recursive: true });
  await writeFile(join(root, 'bin/kill'), '#!/bin/sh\n');
  await chmod(join(root, 'bin/kill'), 0o755);
  await cp(join(REPO_ROOT, 'systemd/crosscred.service'), join(root, 'etc/systemd/system/crosscred.service'));
  await cp(join(REPO_ROOT, 'systemd/crosscred.env'), join(root, 'etc/crosscred/crosscred.env'));
  await cp('/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true });
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('systemd/crosscred.service', () => {
  it('passes systemd-analyze verify with no warning at all', async (ctx) => {
    if (!available) ctx.skip('systemd-analyze is not installed (Debian package systemd)');
    // verify exits 0 on unknown keys and only warns, so silence is the real pass condition.
    const { stdout, stderr } = await run('systemd-analyze', ['verify', `--root=${root}`, join(root, 'etc/systemd/system/crosscred.service')]);
    expect(stdout + stderr).toBe('');
  });

  it('allows no core dump (LimitCORE=0): one would hold the cached credentials and the JWT', async () => {
    // Read as systemd does: the last assignment in [Service] wins. Needs no systemd on the machine.
    const text = await readFile(join(REPO_ROOT, 'systemd/crosscred.service'), 'utf8');
    const service = /^\[Service\]$([\s\S]*?)(?=^\[|$(?![\s\S]))/m.exec(text)?.[1] ?? '';
    const limits = [...service.matchAll(/^LimitCORE=(.*)$/gm)].map((m) => m[1]!.trim());
    expect(limits.at(-1)).toBe('0');
  });

  it('is sandboxed: systemd rates its exposure "OK" (below 2.0 of 10)', async (ctx) => {
    if (!available) ctx.skip('systemd-analyze is not installed (Debian package systemd)');
    const { stdout } = await run('systemd-analyze', ['security', '--offline=yes', `--root=${root}`, '--no-pager', 'crosscred.service']).catch(
      (e: { stdout: string }) => ({ stdout: e.stdout }),
    );
    const score = Number(/Overall exposure level for crosscred\.service: ([\d.]+)/.exec(stdout)?.[1]);
    expect(score).toBeLessThan(2.0);
  });
});
