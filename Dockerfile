# crosscred container images: the same single executable the .rpm and .deb ship (`npm run package`,
# docs/packaging.md), in two images built from this one file:
#
#   crosscred (the default, last stage)  on a distroless base that holds only the C and C++ runtime:
#                                        no shell, no package manager, no Node.js and no node_modules.
#                                        It runs as a numeric non-root user. serve, node-agent, webhook.
#   crosscred-node-agent-init            the node agent DaemonSet's init container, which runs
#                                        `crosscred net-setup --node-agent` as root: that calls `ip`
#                                        (iproute2), which distroless does not have, so this one is
#                                        Debian bookworm-slim with iproute2.
#
#   npm run package -- --arch x64 --only binary       (writes release/crosscred-<version>-linux-x86_64)
#   buildah bud --format docker -t crosscred .        (or: docker build -t crosscred .)
#   buildah bud --format docker --target node-agent-init -t crosscred-node-agent-init .
#
# For aarch64, build that binary (--arch arm64) and add `--arch arm64 --build-arg BINARY_ARCH=aarch64`
# (the node-agent-init target has a RUN step: on an x86-64 host that needs qemu-user-static's binfmt).
# --format docker keeps the HEALTHCHECK: the OCI image format has no field for it, and buildah
# drops it (with a warning) when building OCI images.
#
# Where no registry is reachable, container/build-base-image.sh assembles local stand-ins for both
# bases below (see docs/deployment.md, "Run as a container"); they are stand-ins only.

# --- crosscred-node-agent-init --------------------------------------------------------------------
FROM debian:bookworm-slim AS node-agent-init

ARG BINARY_ARCH=x86_64

# iproute2 and nothing else (bookworm-slim has no `ip`). The local stand-in already holds it, and a
# base that does needs no package lists: install only when it is missing.
RUN if ! command -v ip >/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && ip -V

COPY release/crosscred-*-linux-${BINARY_ARCH} /usr/bin/crosscred

ENV NODE_OPTIONS=--max-semi-space-size=2

# Root: adding addresses to the node's links needs it (with NET_ADMIN, the only capability the
# DaemonSet gives this container). It runs once per node start and exits; it serves nothing.
USER 0:0

ENTRYPOINT ["/usr/bin/crosscred"]
CMD ["net-setup", "--node-agent"]

# --- crosscred (the default image) -------------------------------------------------------------------
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
