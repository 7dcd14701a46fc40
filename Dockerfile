# MerkleKV container image (README, "Docker"). Two stages:
#
# * builder: the release build a developer runs (`cargo build --release`,
#   with --locked so the image uses exactly Cargo.lock), then the debug
#   sections are stripped (the release profile keeps them for perf);
# * runtime: debian-slim, the binary, a non-root user, nothing else.
#
#   docker build -t merklekv .
#   docker run --rm -p 7379:7379 -e MERKLE_KV_SECURITY_REQUIREPASS=secret merklekv
#
# Configure it with a mounted TOML file (`--config /etc/merklekv/merklekv.toml`)
# and/or MERKLE_KV_* environment variables (README, settings table).
# Binding 0.0.0.0 without a password is refused (protected mode): set
# MERKLE_KV_SECURITY_REQUIREPASS (or security.requirepass_file).

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin merklekv \
 && objcopy --strip-debug target/release/merklekv /merklekv

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/merklekv \
      --shell /usr/sbin/nologin merklekv \
 && mkdir -p /var/lib/merklekv/data /etc/merklekv \
 && chown -R merklekv:merklekv /var/lib/merklekv
COPY --from=builder /merklekv /usr/local/bin/merklekv
# Every interface of the container; the persistent engine's data (when
# enabled) in the volume. Both can be overridden with -e.
ENV MERKLE_KV_NETWORK_BIND_ADDRESS=0.0.0.0 \
    MERKLE_KV_STORAGE_PATH=/var/lib/merklekv/data
USER merklekv
WORKDIR /var/lib/merklekv
VOLUME ["/var/lib/merklekv/data"]
EXPOSE 7379
# SIGTERM is the graceful stop (the node says "offline" to the cluster).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/merklekv"]
