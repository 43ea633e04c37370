# syntax=docker/dockerfile:1
# The switchboard binary, static, in a distroless image as a non-root user.
#   docker build -t switchboard .
#   docker run --rm -p 8000:8000 -p 5000:5000/udp switchboard
# See docs/deploy.md.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
        -ldflags "-s -w -X main.buildVersion=${VERSION}" \
        -o /out/switchboard ./cmd/switchboard \
    && mkdir -p /out/data

# distroless/static has no shell, libc or package manager; :nonroot runs
# as uid/gid 65532. No HEALTHCHECK (it would need a shell or a second
# binary): probe GET /health from the orchestrator (docs/deploy.md).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchboard /usr/local/bin/switchboard
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
USER 65532:65532
ENV SWITCHBOARD_HTTP_SERVER_ADDRESS=0.0.0.0 \
    SWITCHBOARD_HTTP_SERVER_PORT=8000 \
    SWITCHBOARD_CIRCLES_DATA_DIR=/data
VOLUME ["/data"]
# HTTP: WebSocket clients, the server API, /health, /metrics, the console.
EXPOSE 8000/tcp
# The game relay (QUIC), when enabled (relay.enabled or --relay-port).
EXPOSE 5000/udp
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
