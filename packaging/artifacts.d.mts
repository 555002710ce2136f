export type Arch = 'x64' | 'arm64';
export type ArtifactKind = 'binary' | 'tar' | 'rpm' | 'deb';
export function artifactNames(version: string, arch: Arch): Record<ArtifactKind, string>;
export function SBOM_NAME(version: string): string;
export const SUMS_NAME: string;
