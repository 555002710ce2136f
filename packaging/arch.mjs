// The two architectures and each packaging system's name for them.
export const ARCHES = {
  x64: { uname: 'x86_64', rpm: 'x86_64', deb: 'amd64', strip: 'strip', qemu: undefined },
  arm64: { uname: 'aarch64', rpm: 'aarch64', deb: 'arm64', strip: 'aarch64-linux-gnu-strip', qemu: 'qemu-aarch64' },
};

export function archInfo(arch) {
  const info = ARCHES[arch];
  if (!info) throw new Error(`unknown architecture "${arch}" (x64 or arm64)`);
  return info;
}
