# crosscred container image: the same single executable the .rpm and .deb ship (`npm run package`,
# docs/packaging.md), on a distroless base that holds only the C and C++ runtime: no shell, no
# package manager, no Node.js and no node_modules. It runs as a numeric non-root user.
#
#   npm run package -- --arch x64 --only binary       (writes release/crosscred-<version>-linux-x86_64)
#   buildah bud --format docker -t crosscred .        (or: docker build -t crosscred .)
#
# For aarch64, build that binary (--arch arm64) and add `--arch arm64 --build-arg BINARY_ARCH=aarch64`.
# --format docker keeps the HEALTHCHECK: the OCI image format has no field for it, and buildah
# drops it (with a warning) when building OCI images.
#
# Where no registry is reachable, container/build-base-image.sh assembles a local stand-in for the
# base below (see docs/deployment.md, "Run as a container"); it is a stand-in only.
FROM gcr.io/distroless/cc-debian12

# x86_64 or aarch64: which of the binaries in release/ (the build context holds only those).
ARG BINARY_ARCH=x86_64

# Owned by root and not writable by the user that runs the daemon.
COPY release/crosscred-*-linux-${BINARY_ARCH} /usr/bin/crosscred

# V8 flags reach a single executable only through NODE_OPTIONS: 2 MB young-generation
# semi-spaces, as the systemd unit and `npm start` run it.
ENV NODE_OPTIONS=--max-semi-space-size=2

# An image cannot set the core dump limit, and a dump holds the credentials: run it with
# `--ulimit core=0` (docker, podman). crosscred logs CORE_DUMPS_ALLOWED at start when it may dump.

# Numeric, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry.
USER 10001:10001

# 8170: IMDS and container-credentials endpoints; 8171: admin (/healthz, /readyz, /metrics).
# `serve` listens on 127.0.0.1 by default, which is what a sidecar sharing the pod's network wants;
# publishing the port from a standalone container needs `--listen 0.0.0.0:8170 --allow-remote`
# (think twice: whoever reaches that port gets the credentials). The health check assumes the
# admin listener stays on 127.0.0.1:8171 (the default; 0.0.0.0:8171 works too).
EXPOSE 8170 8171

# No shell or curl in the image: the binary itself asks the admin listener whether the process
# answers (--alive: /healthz, not /readyz, so a daemon waiting for STS is not restarted for it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/bin/crosscred", "wait-ready", "--alive", "--timeout-ms", "4000"]

# Exec form: no shell is needed (or present).
ENTRYPOINT ["/usr/bin/crosscred"]
CMD ["serve"]
