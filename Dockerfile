# The dagy-worker image, the container ECS Fargate runs for the small, medium, large and xlarge
# tiers. Build it from the repository root with one command:
#
#     docker build -t dagy-worker .
#
# then push it where your account can pull it and set DAGY_ECS_WORKER_IMAGE to its name.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin dagy-worker

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/dagy-worker /usr/local/bin/dagy-worker
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dagy-worker"]
