# Portico container image: the profile-guided release build (scripts/build-pgo.sh) on Debian,
# run from distroless as non-root.
#   docker build -t portico:dev .
# The build stage trains the instrumented binary in front of nginx backends on its own loopback
# with wrk and h2load, the same traffic as `benches/load.sh`; it takes about three times as
# long as a plain `cargo build --release`.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcap2-bin nginx wrk nghttp2-client curl openssl \
 && rm -rf /var/lib/apt/lists/* \
 && rustup component add llvm-tools
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
COPY benches benches
COPY examples examples
COPY scripts scripts
COPY tests tests
# The release profile keeps debug info for profiling; the image does not need it.
RUN CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols bash scripts/build-pgo.sh \
 && cp target/pgo/release/portico /portico \
 && setcap cap_net_bind_service=+ep /portico

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /portico /portico
USER 65532:65532
EXPOSE 80 443 10254
ENTRYPOINT ["/portico"]
