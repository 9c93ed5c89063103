# One lambdaless service image, built from source (the path for machines that can pull
# images; without a registry, scripts/images.sh builds the same layout from host-built
# binaries with Dockerfile.prebuilt):
#
#   docker build --build-arg SERVICE=broker -t lambdaless/broker:latest .
#   docker compose build          # every service, as declared in docker-compose.yml
#
# SERVICE is one of: broker api-gateway mover mqtt-api fetch-responder streamer lambdaless.
# The `build` stage does not depend on SERVICE, so it is the same (cached) for all seven
# images and the workspace compiles once. Plain Dockerfile syntax: works with the legacy
# builder and with BuildKit.
#
# Runtime layout (same as Dockerfile.prebuilt):
#   /usr/local/bin/service            the binary (ENTRYPOINT, PID 1, gets SIGTERM directly)
#   /usr/local/bin/<SERVICE>          symlink -> service (healthchecks: `<SERVICE> healthcheck`)
#   /etc/lambdaless/<SERVICE>.toml    config/<SERVICE>.toml, or an empty file
#   LAMBDALESS_CONFIG=/etc/lambdaless/<SERVICE>.toml, user 10001

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# --locked when the lock file is there; every binary of the workspace, then one folder per
# binary name with its config (an empty one when config/<bin>.toml does not exist).
RUN set -eux; \
    locked=""; if [ -f Cargo.lock ]; then locked="--locked"; fi; \
    cargo build --release $locked --workspace --bins; \
    mkdir -p /out/bin /out/etc/lambdaless; \
    for f in target/release/*; do \
      if [ -f "$f" ] && [ -x "$f" ]; then \
        b="$(basename "$f")"; \
        cp "$f" "/out/bin/$b"; \
        if [ -f "config/$b.toml" ]; then cp "config/$b.toml" "/out/etc/lambdaless/$b.toml"; \
        else : > "/out/etc/lambdaless/$b.toml"; fi; \
      fi; \
    done; \
    ls -la /out/bin

# Shared by every service image (before SERVICE is used, so it is cached once).
FROM ${RUNTIME_IMAGE} AS runtime
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --gid 10001 lambdaless; \
    useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin lambdaless

FROM runtime
ARG SERVICE
RUN if [ -z "${SERVICE}" ]; then \
      echo "build with --build-arg SERVICE=<binary>, e.g. SERVICE=broker" >&2; exit 1; \
    fi
COPY --from=build /out/bin/${SERVICE} /usr/local/bin/service
COPY --from=build /out/etc/lambdaless/${SERVICE}.toml /etc/lambdaless/${SERVICE}.toml
RUN ln -s service "/usr/local/bin/${SERVICE}"
# Only LAMBDALESS_CONFIG: every other LAMBDALESS_* variable is a setting of the service.
ENV LAMBDALESS_CONFIG=/etc/lambdaless/${SERVICE}.toml
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/service"]
