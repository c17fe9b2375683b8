# syntax=docker/dockerfile:1.7
# RTMP origin image. Build from the repository root:
#   docker build -f docker/origin.Dockerfile -t origin:dev .
# Runtime: distroless (no shell, no package manager), non-root uid 65532.
# The pod's preStop is exec ["/origin", "drain", "--wait"]: no shell needed.

ARG RUST_IMAGE=rust:bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole workspace is needed: cargo loads every member's manifest.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p origin --bin origin \
 && install -D -m 0755 target/release/origin /out/origin

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/origin /origin
# 1935 RTMP, 1985 HTTP API (/api/v1/*, /healthz, /readyz, /metrics), 8080 HTTP-FLV
EXPOSE 1935 1985 8080
USER 65532:65532
ENTRYPOINT ["/origin"]
# The operator sets command ["/origin"] and args ["serve"]; same default for `docker run`.
CMD ["serve"]
