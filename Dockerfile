# berth's image: TypeScript compiled in one stage, production dependencies installed in another, only what runs in the last.
# Build: docker build -t berth . — run it with docker-compose.yml, which supplies the socket and a volume for its state.

# Every stage starts from the same official image, so the Node that builds is the Node that runs.
FROM node:24-bookworm-slim AS base

# Production dependencies only, exactly as the lockfile pins them. Copying the manifests alone first
# keeps this layer cached until the lockfile changes. No install scripts: no runtime dependency needs
# one (ssh2's optional native helpers are not used on a unix socket), and none runs unreviewed code.
# Then out go TypeScript sources, declarations, source maps and docs, which never run; licences stay.
FROM base AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && find node_modules -type f \( -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.map' \
      -o \( -name '*.md' ! -iname 'licen[cs]e*' \) \) -exec rm -f {} +

# The compiler and its types are dev dependencies, so the build gets its own, complete install.
FROM base AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# No source maps: nothing in the image reads them.
RUN npm run build -- --sourceMap false

FROM base
# VERSION keeps in step with package.json (scripts/container-test.sh fails when they differ).
# SOURCE is where the image was built from: pass the repository's public address when publishing
# (--build-arg SOURCE=...); berth has none yet, so it is not invented here.
ARG VERSION=0.1.0
ARG SOURCE=
LABEL org.opencontainers.image.title="berth" \
      org.opencontainers.image.description="A typed, documented, secure HTTP API in front of a Docker Engine" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.source="$SOURCE" \
      org.opencontainers.image.licenses="Apache-2.0"

WORKDIR /app
# Owned by root and not writable by the user berth runs as: the code cannot be changed from inside.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# src/version.ts reads the version from here.
COPY package.json ./
# Started as root it finds the socket's group and becomes uid 1000 with it before node starts.
COPY deploy/docker/entrypoint.sh /usr/local/bin/berth-entrypoint
# Where berth keeps the admin token it makes when none is configured (only its hash): a volume in
# docker-compose.yml. A new named volume takes this directory's owner, so uid 1000 can write it.
RUN mkdir -p /var/lib/berth && chown 1000:1000 /var/lib/berth && chmod 700 /var/lib/berth

# A container is reached through its published port, never its own loopback. (With
# BERTH_AUTH_DISABLED=true berth still binds 127.0.0.1 only, whatever this says.)
ENV BERTH_HOST=0.0.0.0 \
    BERTH_PORT=8080 \
    BERTH_STATE_DIR=/var/lib/berth
EXPOSE 8080

# The official image's unprivileged `node` user, by number so that a runtime can verify it is not
# root without reading /etc/passwd. Access to the Docker socket comes from its group, whose gid differs
# between hosts: docker-compose.yml starts the entrypoint as root, which finds it and drops to this user
# with it; run as this user, add it yourself (docker run --group-add).
USER 1000:1000

# GET /healthz, through the entrypoint so that it too runs as uid 1000 when the container starts as root.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/berth-entrypoint", "healthcheck"]

# The entrypoint execs node (through setpriv when it starts as root): no shell stays in between, so
# node is the process signals reach and SIGTERM starts berth's graceful close.
ENTRYPOINT ["/usr/local/bin/berth-entrypoint"]
