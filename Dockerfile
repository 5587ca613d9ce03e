# The dagy-worker image, the container ECS Fargate runs for the small, medium, large and xlarge
# tiers. With access to Docker Hub, build it from the repository root with one command:
#
#     docker build -t dagy-worker .
#
# then push it where your account can pull it and set DAGY_ECS_WORKER_IMAGE to its name.
# Without a registry, scripts/worker-image.sh builds the same image from the cargo-built binary
# on a locally made Debian base. Both end with the instructions of docker/worker.Dockerfile.
#
# The worker is one binary, easy to put in any image of your own (Python, R, a JVM) next to
# the programs your exec: tasks run:
#
#     COPY --from=dagy-worker:latest /usr/local/bin/dagy-worker /usr/local/bin/dagy-worker
#     ENTRYPOINT ["/usr/local/bin/dagy-worker"]
#
# It needs glibc 2.34 or later (x86_64; Debian 12 bookworm has 2.36, Ubuntu 22.04 2.35, Amazon
# Linux 2023 2.34, Debian 11 and Amazon Linux 2 are too old) and CA certificates
# (ca-certificates) to reach AWS; it links only libc, libm and libgcc_s (`ldd`); SQLite is
# compiled in.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin dagy-worker

FROM debian:bookworm-slim AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# The final stage: docker/worker.Dockerfile's instructions, with the binary from the build stage.
FROM base
COPY --from=build /src/target/release/dagy-worker /usr/local/bin/dagy-worker
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dagy-worker"]
