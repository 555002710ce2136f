import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { archInfo } from './arch.mjs';
import { run } from './run.mjs';
import { CREATE_USERS, RELOAD, RESTART_IF_RUNNING, STOP_AND_DISABLE } from './scriptlets.mjs';
import { envFiles, packagedUnits } from './units.mjs';

const SUMMARY = 'AWS credentials for this host from its OIDC identity, on the IMDS address';
const DESCRIPTION = [
  'crosscred trades a web-identity token (Kubernetes, a token file, or an Alibaba ECS or Tencent CVM',
  'instance attested by crosscred issuer) for AWS credentials at STS and serves them on',
  '169.254.169.254, where unmodified AWS SDKs and CLIs look. One self-contained binary with',
  'Node.js embedded; no nodejs package needed.',
];
const HOMEPAGE = 'https://github.com/crosscred/crosscred';
const SYSTEM_UNIT_DIR = 'usr/lib/systemd/system';
const ENV_FILES = ['etc/crosscred/crosscred.env', 'etc/crosscred/crosscred-issuer.env'];

function put(root, path, content, mode) {
  const file = join(root, path);
  mkdirSync(dirname(file), { recursive: true });
  if (typeof content === 'string') writeFileSync(file, content);
  else copyFileSync(content.copyFrom, file);
  chmodSync(file, mode);
}

/** Every path under root gets the same mtime, so that archives of it do not depend on when it was built. */
function pinTimes(root, epoch) {
  for (const entry of readdirSync(root, { recursive: true })) utimesSync(join(root, entry), epoch, epoch);
  utimesSync(root, epoch, epoch);
}

/** The installed tree of both packages: /usr/bin/crosscred, the units, the env files, Node's licence. */
export function stagePackageRoot({ root, binary, nodeLicense, epoch }) {
  rmSync(root, { recursive: true, force: true });
  put(root, 'usr/bin/crosscred', { copyFrom: binary }, 0o755);
  for (const [name, text] of Object.entries(packagedUnits())) put(root, `${SYSTEM_UNIT_DIR}/${name}`, text, 0o644);
  for (const [name, text] of Object.entries(envFiles())) put(root, `etc/crosscred/${name}`, text, 0o600);
  put(root, 'usr/share/doc/crosscred/NODE-LICENSE', { copyFrom: nodeLicense }, 0o644);
  for (const dir of [
    'usr',
    'usr/bin',
    'usr/lib',
    'usr/lib/systemd',
    SYSTEM_UNIT_DIR,
    'etc',
    'etc/crosscred',
    'usr/share',
    'usr/share/doc',
    'usr/share/doc/crosscred',
  ])
    chmodSync(join(root, dir), 0o755);
  for (const dir of ['crosscred.service.d', 'crosscred-issuer.service.d']) chmodSync(join(root, SYSTEM_UNIT_DIR, dir), 0o755);
  pinTimes(root, epoch);
}

/**
 * The .rpm, with Debian's rpmbuild (4.18). `__os_install_post %{nil}` and `debug_package %{nil}`:
 * the automatic strip would destroy the injected blob. `_build_id_links none`: Node's build-id is
 * the one the distribution's nodejs package ships under /usr/lib/.build-id. Reproducible through
 * SOURCE_DATE_EPOCH: build time and file times clamped to it, a fixed build host.
 */
export function buildRpm({ arch, version, stage, workDir, outDir, epoch }) {
  // The architecture comes from --target alone: a BuildArch other than the host's is refused.
  const a = archInfo(arch);
  const top = join(workDir, `rpm-${arch}`);
  rmSync(top, { recursive: true, force: true });
  mkdirSync(join(top, 'SPECS'), { recursive: true });
  const spec = `Name: crosscred
Version: ${version}
Release: 1
Summary: ${SUMMARY}
License: Apache-2.0 AND MIT
URL: ${HOMEPAGE}
# net-setup --local-only, on in the shipped crosscred.env, needs nft.
Recommends: nftables
Requires(pre): /usr/sbin/useradd, /usr/sbin/groupadd, /usr/bin/getent

%define __os_install_post %{nil}
%define debug_package %{nil}
%define _build_id_links none

%description
${DESCRIPTION.join('\n')}

%install
cp -a ${stage}/. %{buildroot}/

%pre
${CREATE_USERS}
exit 0

%post
${RELOAD}
exit 0

%preun
# $1 is 0 on erase, 1 on upgrade (the new version's files are already in place).
if [ "$1" -eq 0 ]; then
${STOP_AND_DISABLE}
fi
exit 0

%postun
${RELOAD}
if [ "$1" -ge 1 ]; then
${RESTART_IF_RUNNING}
fi
exit 0

%files
%attr(0755,root,root) /usr/bin/crosscred
%attr(0644,root,root) /${SYSTEM_UNIT_DIR}/crosscred.service
%attr(0644,root,root) /${SYSTEM_UNIT_DIR}/crosscred-issuer.service
%dir %attr(0755,root,root) /${SYSTEM_UNIT_DIR}/crosscred.service.d
%dir %attr(0755,root,root) /${SYSTEM_UNIT_DIR}/crosscred-issuer.service.d
%attr(0644,root,root) /${SYSTEM_UNIT_DIR}/crosscred.service.d/hardening-systemd-247.conf
%attr(0644,root,root) /${SYSTEM_UNIT_DIR}/crosscred-issuer.service.d/hardening-systemd-247.conf
%dir %attr(0755,root,root) /etc/crosscred
${ENV_FILES.map((f) => `%config(noreplace) %attr(0600,root,root) /${f}`).join('\n')}
%dir %attr(0755,root,root) /usr/share/doc/crosscred
%attr(0644,root,root) /usr/share/doc/crosscred/NODE-LICENSE
`;
  const specFile = join(top, 'SPECS', 'crosscred.spec');
  writeFileSync(specFile, spec);
  const define = (k, v) => ['--define', `${k} ${v}`];
  run(
    'rpmbuild',
    [
      '-bb',
      '--quiet',
      '--target',
      `${a.rpm}-linux`,
      ...define('_topdir', top),
      ...define('_rpmdir', outDir),
      ...define('_build_name_fmt', '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm'),
      ...define('_buildhost', 'crosscred-release'),
      ...define('use_source_date_epoch_as_buildtime', '1'),
      ...define('clamp_mtime_to_source_date_epoch', '1'),
      // xz (the targets' own packages use xz; not every rpm reads zstd) at level 0: 3 MB larger than
      // level 2 on a 118 MB binary, and a third of the time (8 s of CPU against 26 s).
      ...define('_binary_payload', 'w0.xzdio'),
      specFile,
    ],
    { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) } },
  );
}

/** The .deb: dpkg-deb over the staged tree plus DEBIAN/, owned by root whatever user builds it. */
export function buildDeb({ arch, version, stage, workDir, out, epoch }) {
  const a = archInfo(arch);
  const root = join(workDir, `deb-${arch}`);
  rmSync(root, { recursive: true, force: true });
  run('cp', ['-a', `${stage}/.`, root]);
  const installedKiB = Math.ceil(
    readdirSync(root, { recursive: true })
      .map((p) => statSync(join(root, p)))
      .filter((s) => s.isFile())
      .reduce((n, s) => n + s.size, 0) / 1024,
  );
  const control = `Package: crosscred
Version: ${version}
Architecture: ${a.deb}
Maintainer: crosscred maintainers <crosscred@users.noreply.github.com>
Installed-Size: ${installedKiB}
Depends: libc6 (>= 2.28), libstdc++6 (>= 5.2), libgcc-s1 | libgcc1, passwd
Recommends: nftables
Section: admin
Priority: optional
Homepage: ${HOMEPAGE}
Description: ${SUMMARY}
${DESCRIPTION.map((l) => ` ${l}`).join('\n')}
`;
  const scripts = {
    preinst: `#!/bin/sh\nset -e\nif [ "$1" = install ] || [ "$1" = upgrade ]; then\n${CREATE_USERS}\nfi\nexit 0\n`,
    // configure with a previous version in $2 is an upgrade: restart what was running.
    postinst: `#!/bin/sh\nset -e\nif [ "$1" = configure ]; then\n${RELOAD}\nif [ -n "$2" ]; then\n${RESTART_IF_RUNNING}\nfi\nfi\nexit 0\n`,
    prerm: `#!/bin/sh\nset -e\nif [ "$1" = remove ] || [ "$1" = deconfigure ]; then\n${STOP_AND_DISABLE}\nfi\nexit 0\n`,
    // purge also removes what the units kept in their state directories (the instance secret).
    postrm: `#!/bin/sh\nset -e\nif [ "$1" = remove ] || [ "$1" = purge ]; then\n${RELOAD}\nfi\nif [ "$1" = purge ]; then\n  rm -rf /var/lib/crosscred /var/lib/private/crosscred /var/lib/crosscred-issuer /var/lib/private/crosscred-issuer\nfi\nexit 0\n`,
  };
  put(root, 'DEBIAN/control', control, 0o644);
  put(root, 'DEBIAN/conffiles', ENV_FILES.map((f) => `/${f}\n`).join(''), 0o644);
  for (const [name, text] of Object.entries(scripts)) put(root, `DEBIAN/${name}`, text, 0o755);
  chmodSync(join(root, 'DEBIAN'), 0o755);
  pinTimes(root, epoch);
  run('dpkg-deb', ['--root-owner-group', '-Zxz', '-z0', '--build', root, `${out}.tmp`], { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) } });
  renameSync(`${out}.tmp`, out);
}

/**
 * The tarball for a hand install (docs/deployment.md): the binary and systemd/ as they are in the
 * repository (units for /usr/local/bin/crosscred). Sorted, owned by root, fixed times, gzip without
 * a name or time: the same input gives the same bytes.
 */
export function buildTarball({ arch, version, binary, nodeLicense, workDir, out, epoch }) {
  const top = `crosscred-${version}-linux-${archInfo(arch).uname}`;
  const root = join(workDir, `tar-${arch}`);
  rmSync(root, { recursive: true, force: true });
  const dir = join(root, top);
  put(dir, 'crosscred', { copyFrom: binary }, 0o755);
  const systemd = new URL('../systemd/', import.meta.url);
  for (const name of ['crosscred.service', 'crosscred-issuer.service', 'hardening-systemd-247.conf'])
    put(dir, `systemd/${name}`, readFileSync(new URL(name, systemd), 'utf8'), 0o644);
  for (const name of ['crosscred.env', 'crosscred-issuer.env']) put(dir, `systemd/${name}`, readFileSync(new URL(name, systemd), 'utf8'), 0o600);
  put(dir, 'NODE-LICENSE', { copyFrom: nodeLicense }, 0o644);
  chmodSync(dir, 0o755);
  chmodSync(join(dir, 'systemd'), 0o755);
  pinTimes(root, epoch);
  const tarFile = join(workDir, `${top}.tar`);
  run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--format=gnu', `--mtime=@${epoch}`, '-cf', tarFile, '-C', root, top]);
  run('gzip', ['-n', '-6', '-f', tarFile]);
  renameSync(`${tarFile}.gz`, out);
}
