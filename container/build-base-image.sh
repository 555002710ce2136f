#!/usr/bin/env bash
# Assembles LOCAL STAND-INS for the two base images the Dockerfile names, for machines that reach
# no image registry (this project's build machines reach only Debian mirrors and npm):
#
#   gcr.io/distroless/cc-debian12   no shell, no package manager: glibc, libstdc++ and libgcc (what
#                                   the single executable links against), CA certificates, tzdata,
#                                   netbase files and passwd/group, in the layout of the real image
#   debian:bookworm-slim            the Debian root itself (minbase), for the node-agent-init stage.
#                                   Unlike the real image it already holds iproute2, so that stage's
#                                   RUN step installs nothing and the build needs no package lists
#                                   (the real image gets iproute2 from apt in that same step)
#
# THESE ARE STAND-INS, NOT THE REAL IMAGES. They are built from the same Debian release the real
# images use and mirror them closely enough to build and exercise the Dockerfile here, but they are
# not the published images (a different file set, no signatures, no SBOM). Wherever a registry is
# reachable, pull the real images instead and never push these. Every image made here carries the
# label io.crosscred.stand-in=true.
#
# Usage: container/build-base-image.sh [--force]
#   Idempotent: an image that already exists is left alone (--force rebuilds both).
#   Needs root, buildah and debootstrap. The Debian mirror is the one apt on this machine uses
#   (read from apt's configuration at run time; override with CROSSCRED_DEBIAN_MIRROR).
#   The debootstrapped root is cached in CROSSCRED_CONTAINER_CACHE
#   (default /var/cache/crosscred-container); delete it to start from scratch.
#   Storage driver: CROSSCRED_STORAGE_DRIVER (default vfs, the one that works on these machines).
set -euo pipefail

RUNTIME_BASE=gcr.io/distroless/cc-debian12:latest
# Committed under the short name the Dockerfile uses: buildah expands it here exactly as it expands
# `FROM debian:bookworm-slim`, so the build finds this image locally and asks no registry.
SLIM_BASE=debian:bookworm-slim
SUITE=bookworm
CACHE=${CROSSCRED_CONTAINER_CACHE:-/var/cache/crosscred-container}
BUILDAH=(buildah --storage-driver "${CROSSCRED_STORAGE_DRIVER:-vfs}")
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf 'build-base-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and buildah's vfs storage need it)"
command -v buildah >/dev/null || die "buildah is missing (apt-get install buildah)"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"

image_exists() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

if [ "$FORCE" = 0 ] && image_exists "$RUNTIME_BASE" && image_exists "$SLIM_BASE"; then
  log "the stand-in base images exist; nothing to do (--force rebuilds them)"
  exit 0
fi

# --- Debian root (cached) ------------------------------------------------------------------------
mirror() {
  if [ -n "${CROSSCRED_DEBIAN_MIRROR:-}" ]; then echo "$CROSSCRED_DEBIAN_MIRROR"; return; fi
  # The archive apt itself uses for the main bookworm suite (needs a prior `apt-get update`).
  local site
  site=$(apt-get indextargets --format '$(SITE)' 'Identifier: Packages' "Codename: $SUITE" \
           'Label: Debian' 'Component: main' 2>/dev/null | head -n1)
  [ -n "$site" ] || die "apt knows no Debian $SUITE main archive; run apt-get update or set CROSSCRED_DEBIAN_MIRROR"
  echo "$site"
}

# ca-certificates, tzdata and netbase are what distroless carries besides the C libraries; iproute2
# is what the node-agent-init stage adds to bookworm-slim.
INCLUDE=ca-certificates,tzdata,netbase,iproute2
ROOTFS=$CACHE/$SUITE-minbase
# The marker holds the package list: a root cached with another list (an older script) is made again.
if [ "$(cat "$ROOTFS/.crosscred-complete" 2>/dev/null)" != "$INCLUDE" ]; then
  MIRROR=$(mirror)
  log "debootstrap --variant=minbase $SUITE from $MIRROR into $ROOTFS (a few minutes)"
  rm -rf "$ROOTFS"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase --include="$INCLUDE" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
  # Like the official Debian images: no package lists or caches in the image.
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
  echo "$INCLUDE" >"$ROOTFS/.crosscred-complete"
else
  log "using cached Debian root $ROOTFS"
fi

STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# Copies a directory tree into a fresh image and commits it with the given config arguments.
commit_image() {
  local name=$1 tree=$2; shift 2
  local ctr mnt
  ctr=$("${BUILDAH[@]}" from scratch)
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  # Not the marker, and not what a runtime mounts over /dev, /proc and /sys.
  tar -C "$tree" --numeric-owner --exclude=./.crosscred-complete --exclude='./dev/*' --exclude='./proc/*' \
    --exclude='./sys/*' -cf - . | tar -C "$mnt" --numeric-owner -xpf -
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" config \
    --label io.crosscred.stand-in=true \
    --label "org.opencontainers.image.description=LOCAL STAND-IN for $name, assembled by container/build-base-image.sh; not the published image" \
    "$@" "$ctr"
  "${BUILDAH[@]}" rmi -f "$name" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" commit --quiet --format docker --rm "$ctr" "$name" >/dev/null
  log "committed $name"
}

# --- distroless cc-debian12 stand-in ------------------------------------------------------------
if [ "$FORCE" = 1 ] || ! image_exists "$RUNTIME_BASE"; then
  dl=$STAGE/distroless
  libdir=usr/lib/x86_64-linux-gnu
  mkdir -p "$dl/$libdir" "$dl/usr/lib64" "$dl/usr/bin" "$dl/etc/ssl/certs" "$dl/usr/share" \
           "$dl/home/nonroot" "$dl/root" "$dl/var/run" "$dl/tmp"
  ln -s usr/lib "$dl/lib"; ln -s usr/lib64 "$dl/lib64"; ln -s usr/bin "$dl/bin"
  chmod 1777 "$dl/tmp"; chmod 0700 "$dl/root"
  # The C and C++ runtime the single executable (Node inside) links against, from the Debian root:
  # what `ldd` lists for the official Node binary, which distroless/cc carries too.
  for name in libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 libstdc++.so.6 libgcc_s.so.1 ld-linux-x86-64.so.2; do
    [ -e "$ROOTFS/$libdir/$name" ] || die "$name is not in the Debian root"
    cp -L "$ROOTFS/$libdir/$name" "$dl/$libdir/$name"
  done
  ln -s "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$dl/usr/lib64/ld-linux-x86-64.so.2"
  cp -L "$ROOTFS/etc/ssl/certs/ca-certificates.crt" "$dl/etc/ssl/certs/"
  cp -a "$ROOTFS/usr/share/zoneinfo" "$dl/usr/share/"
  cp -a "$ROOTFS/etc/services" "$ROOTFS/etc/protocols" "$ROOTFS/etc/nsswitch.conf" "$dl/etc/"
  cp -L "$ROOTFS/etc/os-release" "$dl/etc/os-release"
  # distroless's users: root, nobody and nonroot (65532).
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$dl/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$dl/etc/group"
  chown 65532:65532 "$dl/home/nonroot"
  commit_image "$RUNTIME_BASE" "$dl" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --workingdir /
fi

# --- debian:bookworm-slim stand-in (the node-agent-init stage's base) -------------------------------
if [ "$FORCE" = 1 ] || ! image_exists "$SLIM_BASE"; then
  commit_image "$SLIM_BASE" "$ROOTFS" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash \
    --workingdir /
fi
