# crosscred container image: build with the dev dependencies, run with the production ones only,
# on a distroless base (no shell, no package manager), as a numeric non-root user.
#
#   buildah bud --format docker -t crosscred .      (or: docker build -t crosscred .)
#
# --format docker keeps the HEALTHCHECK: the OCI image format has no field for it, and buildah
# drops it (with a warning) when building OCI images.
#
# Behind a TLS-intercepting proxy, hand its CA bundle to `npm ci` as a build secret; it is mounted
# for that one step only and never lands in a layer:
#   buildah bud --format docker --secret id=extra_ca_certs,src=/etc/ssl/certs/ca-certificates.crt -t crosscred .
#
# Where no registry is reachable, container/build-base-image.sh assembles local stand-ins for both
# base images below (see docs/deployment.md, "Run as a container"); they are stand-ins only.

# --- build: compile TypeScript, then drop the dev dependencies (prune leaves empty scope folders) --
FROM node:20-bookworm-slim AS build
WORKDIR /src
ENV npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

# Dependencies first, so the layer is reused while only sources change. The only install script
# (@alicloud/openapi-core's TypeScript version pick) matters on Node 10/12 alone: --ignore-scripts.
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=extra_ca_certs \
    if [ -s /run/secrets/extra_ca_certs ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/extra_ca_certs; fi; \
    npm ci --ignore-scripts

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts \
 && find node_modules -mindepth 1 -maxdepth 1 -type d -empty -delete \
 && node -e "const left = ['typescript','vitest','vite'].filter(d => require('fs').existsSync('node_modules/' + d)); if (left.length) { console.error('dev dependencies left: ' + left); process.exit(1); }"

# --- runtime: distroless Node 20, production dependencies and the compiled code only -------------
FROM gcr.io/distroless/nodejs20-debian12 AS runtime
WORKDIR /app
ENV NODE_ENV=production

# Owned by root and not writable by the user that runs the daemon.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist

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

# No shell or curl in the image: Node itself asks the admin listener whether the process is alive.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/nodejs/bin/node", "-e", "fetch('http://127.0.0.1:8171/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# distroless keeps Node at /nodejs/bin/node; the absolute path does not depend on PATH. Exec form:
# no shell is needed (or present).
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=2", "/app/dist/cli/main.js"]
CMD ["serve"]
