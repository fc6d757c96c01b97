# Portico container image: a static-ish release build on Debian, run from distroless as non-root.
#   docker build -t portico:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
COPY benches benches
COPY examples examples
COPY tests tests
# The release profile keeps debug info for profiling; the image does not need it.
RUN CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin portico \
 && cp target/release/portico /portico \
 && setcap cap_net_bind_service=+ep /portico

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /portico /portico
USER 65532:65532
EXPOSE 80 443 10254
ENTRYPOINT ["/portico"]
