import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/chain.js';
import { clientAvailable } from '../support/clients.js';

/**
 * systemd/crosscred.service and crosscred-issuer.service, the hand-install units, as systemd itself
 * reads them: `systemd-analyze verify` in a scratch root holding the units, their drop-in with the
 * newer hardening, their environment files, the system's own units and the binary's path, and
 * `systemd-analyze security` for the sandbox's exposure score. The packaged units (the same text
 * with /usr/bin paths) are verified in test/e2e/packages.test.ts.
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
  // ExecStart's /bin/sh (the placeholder check) likewise.
  for (const tool of ['kill', 'sh']) {
    await writeFile(join(root, 'bin', tool), '#!/bin/sh\n');
    await chmod(join(root, 'bin', tool), 0o755);
  }
  for (const unit of ['crosscred', 'crosscred-issuer']) {
    await cp(join(REPO_ROOT, `systemd/${unit}.service`), join(root, `etc/systemd/system/${unit}.service`));
    await mkdir(join(root, `etc/systemd/system/${unit}.service.d`));
    await cp(join(REPO_ROOT, 'systemd/hardening-systemd-247.conf'), join(root, `etc/systemd/system/${unit}.service.d/hardening-systemd-247.conf`));
    await cp(join(REPO_ROOT, `systemd/${unit}.env`), join(root, `etc/crosscred/${unit}.env`));
  }
  await cp('/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true });
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('systemd/crosscred.service', () => {
  it.for(['crosscred', 'crosscred-issuer'])('%s.service with its drop-in passes systemd-analyze verify with no warning at all', async (unit, ctx) => {
    if (!available) ctx.skip('systemd-analyze is not installed (Debian package systemd)');
    // verify exits 0 on unknown keys and only warns, so silence is the real pass condition.
    const { stdout, stderr } = await run('systemd-analyze', ['verify', `--root=${root}`, join(root, `etc/systemd/system/${unit}.service`)]);
    expect(stdout + stderr).toBe('');
  });

  it('keeps in the units only what systemd 239 knows; the newer settings are in the drop-in', async () => {
    // Added in systemd 240-247 (Type=exec in 240): 239 (Alibaba Cloud Linux 3, TencentOS 3)
    // would log "Unknown lvalue" and ignore them. In the drop-in that is expected and documented.
    const newer = /^(Type=exec|ProtectHostname|RestrictSUIDSGID|ProtectKernelLogs|ProtectClock|ProtectProc|ProcSubset|ExecCondition)\b/m;
    for (const unit of ['crosscred.service', 'crosscred-issuer.service']) expect(await readFile(join(REPO_ROOT, 'systemd', unit), 'utf8')).not.toMatch(newer);
    const dropIn = await readFile(join(REPO_ROOT, 'systemd/hardening-systemd-247.conf'), 'utf8');
    for (const key of ['ProtectHostname=yes', 'RestrictSUIDSGID=yes', 'ProtectKernelLogs=yes', 'ProtectClock=yes', 'ProtectProc=invisible', 'ProcSubset=pid']) {
      expect(dropIn).toContain(`\n${key}\n`);
    }
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
