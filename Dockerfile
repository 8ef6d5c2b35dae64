# One image for the whole backend: gateway, message-store, presence,
# notification and chatctl, all in /usr/local/bin. docker-compose.yml and the
# Kubernetes manifests in deploy/ pick which binary a container runs.
#
#   docker build -t chat-backend .
#   docker run --rm chat-backend gateway

# ---- build ------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src

COPY . .

# Dependency caching: BuildKit cache mounts keep the crates.io registry and the
# target directory between builds, so a source change rebuilds only the
# workspace's own crates. The binaries are copied out of the cached target dir
# because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && mkdir -p /out \
    && for bin in gateway message-store presence notification chatctl; do \
         cp "target/release/$bin" /out/ || exit 1; \
       done

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid/gid so Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 chat \
    && useradd --system --uid 10001 --gid chat --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin chat

# Where the gateway keeps attachments on local disk (GATEWAY_ATTACHMENTS); owned by
# the service user so that a fresh named volume mounted here is writable.
RUN mkdir -p /data/attachments && chown 10001:10001 /data/attachments

COPY --from=builder /out/gateway /out/message-store /out/presence /out/notification /out/chatctl /usr/local/bin/

ENV LOG_FORMAT=json \
    RUST_LOG=info

USER 10001:10001
# gateway (REST + WebSocket + ops), then the ops ports of message-store,
# presence and notification.
EXPOSE 8000 9101 9102 9103

# No ENTRYPOINT: the command is the binary to run (compose `command:`,
# Kubernetes `command:`). Plain `docker run IMAGE` starts a gateway.
CMD ["gateway"]
