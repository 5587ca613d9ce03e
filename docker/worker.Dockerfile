# The dagy-worker image's final stage: the worker binary on Debian bookworm, run as an
# unprivileged user. Both ways of building the image end with exactly these instructions, so
# they make the same layout (scripts/worker-image.sh checks that they agree):
#
#   - offline, from the cargo-built binary (scripts/worker-image.sh): BASE is the locally made
#     dagy-base:bookworm (debootstrap minbase with ca-certificates) and the build context is a
#     folder holding `dagy-worker`;
#   - with registry access, the multi-stage Dockerfile at the repository root: its last stage
#     repeats these lines, the binary coming from its build stage (Docker has no include).
#
# The layout: /usr/local/bin/dagy-worker, user and group 65532, the worker as ENTRYPOINT, and
# ca-certificates from the base (the worker reaches AWS over HTTPS). A handler manifest for
# exec: tasks goes in /etc/dagy/handlers.toml (see examples/python-worker).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY dagy-worker /usr/local/bin/dagy-worker
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dagy-worker"]
