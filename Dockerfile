# berth's image: TypeScript compiled in one stage, production dependencies installed in another, only what runs in the last.
# Build: docker build -t berth . — run it with docker-compose.yml, which supplies the socket, its group and the token.

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

# A container is reached through its published port, never its own loopback. (With
# BERTH_AUTH_DISABLED=true berth still binds 127.0.0.1 only, whatever this says.)
ENV BERTH_HOST=0.0.0.0 \
    BERTH_PORT=8080
EXPOSE 8080

# The official image's unprivileged `node` user, by number so that a runtime can verify it is not
# root without reading /etc/passwd. Access to the Docker socket comes from its group, added at run
# time (group_add in docker-compose.yml, --group-add with docker run): its gid differs between hosts.
USER 1000:1000

# Node's own fetch: the image has no curl, and needs none.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.BERTH_PORT || 8080) + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Node directly, no shell in between, so SIGTERM reaches berth's graceful close. Run it with an init
# process (init: true in compose, docker run --init) so zombies are reaped.
# --max-semi-space-size=4: V8's young generation defaults to 16 MiB a half, and an idle berth keeps
# both halves resident; 4 keeps it about 25 MiB smaller with no throughput lost (bench/).
ENTRYPOINT ["node", "--max-semi-space-size=4", "dist/server.js"]
