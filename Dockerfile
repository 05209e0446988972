# Production image: the release binary on distroless (glibc, CA certificates,
# no shell, no package manager), running as the distroless `nonroot` user.
#   docker build -t cruddur-backend .
#   docker run -p 4567:4567 -v cruddur-data:/data cruddur-backend
# Secrets (HONEYCOMB_API_KEY, AWS_*, ROLLBAR_ACCESS_TOKEN) come from the
# environment at run time; none is ever copied into an image.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Stripped symbols keep the binary small; set for both builds so the
# dependency layer below is reused by the real build.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# Dependencies in their own layer, rebuilt only when the manifests change:
# build them against placeholder sources, then forget the placeholder crate.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p backend/src \
    && echo 'fn main() {}' > backend/src/main.rs \
    && touch backend/src/lib.rs \
    && cargo build --release --locked \
    && cargo clean --release --locked --package cruddur-backend \
    && rm -rf backend
COPY backend ./backend
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/cruddur-backend /out/cruddur-backend \
    && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/cruddur-backend /usr/local/bin/cruddur-backend
# The SQLite database lives in a volume the nonroot user (65532) owns.
COPY --from=build --chown=65532:65532 /out/data /data
# MIMALLOC_ALLOW_THP=0: no transparent huge pages for the allocator, even
# on a host whose THP setting is "always" (2 MiB pages doubled peak memory;
# bench/README.md, "Memory").
ENV PORT=4567 \
    BIND_ADDRESS=0.0.0.0 \
    MIMALLOC_ALLOW_THP=0 \
    DATABASE_PATH=/data/cruddur.db \
    LOG_FORMAT=json
USER 65532:65532
VOLUME ["/data"]
EXPOSE 4567
# No curl here: the binary probes its own /api/health-check (exit 0 on a 200).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/cruddur-backend", "healthcheck"]
# SIGTERM (docker stop) finishes in-flight requests, flushes every sink, exits 0.
CMD ["/usr/local/bin/cruddur-backend"]
