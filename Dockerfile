# syntax=docker/dockerfile:1
# wasmgate images, one multi-stage build: the Rust binaries and the wasm filters are compiled in
# the `build` stage; each service's image copies only what it runs.

FROM rust:1.95-bookworm AS build
# binaryen: `xtask package` shrinks chain.wasm with its `wasm-opt` (docs/build-profile.md); the
# bookworm release is the one the digests under deploy/ were made with.
RUN rustup target add wasm32-wasip1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends binaryen \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The filters are built by `xtask package`, the build `cargo xtask build` runs: the same profiles
# and flags, and each module's exports trimmed to the callbacks its filter handles
# (docs/build-profile.md), so the stack runs the modules the OCI images under deploy/ carry.
RUN cargo build --locked --release -p authz-service -p wasmgate-demo -p xtask \
 && target/release/xtask package

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent wasmgate

# The OAuth 2.0 authorization server; its SQLite database and keys live in /data.
FROM runtime AS authz-service
COPY --from=build /src/target/release/authz-service /usr/local/bin/authz-service
RUN mkdir /data && chown wasmgate /data
USER wasmgate
ENTRYPOINT ["authz-service"]

# The demo notes API and the demo client pages (`wasmgate-demo notes|client`).
FROM runtime AS demo
COPY --from=build /src/target/release/wasmgate-demo /usr/local/bin/wasmgate-demo
USER wasmgate
ENTRYPOINT ["wasmgate-demo"]

# One-shot setup: copies the filters into the volume Envoy mounts and makes the dev certificates
# (kept when still valid) in the bind-mounted ./certs, so the host can trust the dev CA.
FROM runtime AS setup
COPY --from=build /src/target/release/xtask /usr/local/bin/wasmgate-xtask
COPY --from=build /src/target/wasm32-wasip1/wasm/bearer_auth.wasm \
                  /src/target/wasm32-wasip1/wasm/rate_limit.wasm \
                  /src/target/wasm32-wasip1/wasm/route_rewrite.wasm \
                  /src/target/wasm32-wasip1/wasm/chain.wasm /opt/wasmgate/filters/
ENTRYPOINT ["sh", "-c", "cp /opt/wasmgate/filters/*.wasm /filters/ && wasmgate-xtask certs --dir /certs"]
