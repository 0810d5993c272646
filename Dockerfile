# One image, both binaries: `hawser` (entrypoint) and `hawser-operator`.
#   docker build -t hawser:0.1.0 .
# The Helm chart runs the gateway with the entrypoint and the operator with
# `command: [/usr/local/bin/hawser-operator]`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hawser-gateway -p hawser-operator \
 && install -m 0755 target/release/hawser target/release/hawser-operator /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/hawser /usr/local/bin/hawser-operator /usr/local/bin/
# Migrations are embedded in the binaries; nothing else is needed at run time.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hawser"]
CMD ["serve"]
