import { archInfo } from './arch.mjs';

/**
 * The file names `npm run package` writes into release/, one place for the build and for the
 * tests that consume it (test/support/release-artifacts.ts).
 */
export function artifactNames(version, arch) {
  const a = archInfo(arch);
  return {
    binary: `crosscred-${version}-linux-${a.uname}`,
    tar: `crosscred-${version}-linux-${a.uname}.tar.gz`,
    rpm: `crosscred-${version}-1.${a.rpm}.rpm`,
    deb: `crosscred_${version}_${a.deb}.deb`,
  };
}

export const SBOM_NAME = (version) => `crosscred-${version}.cdx.json`;
export const SUMS_NAME = 'SHA256SUMS';
