# syntax=docker/dockerfile:1.7
# OriginCluster operator image. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t origin-operator:dev .
# Runtime: distroless (no shell, no package manager), non-root uid 65532.

ARG RUST_IMAGE=rust:bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole workspace is needed: cargo loads every member's manifest.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p origin-operator --bin origin-operator \
 && install -D -m 0755 target/release/origin-operator /out/origin-operator

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/origin-operator /origin-operator
# /healthz, /readyz and /metrics
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/origin-operator"]
