# swarmtrain from source: docker build -t swarmtrain .
#   docker run --rm swarmtrain node --help
#   docker run -d --name n1 -p 4001:4001 -p 9090:9090 -v swarmtrain:/var/lib/swarmtrain \
#     swarmtrain node --dir /var/lib/swarmtrain/node --port 4001 --http 0.0.0.0:9090
# GPU detection (NVML) needs cgo, on by default here; NVML itself comes at run
# time from the NVIDIA container toolkit (docker run --gpus all). Build with
# --build-arg CGO_ENABLED=0 for a static binary without GPU detection.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG CGO_ENABLED=1
ARG VERSION=devel
ARG COMMIT=
RUN CGO_ENABLED=${CGO_ENABLED} CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations" go build -trimpath \
      -ldflags "-s -w -X github.com/swarmtrain/swarmtrain/internal/buildinfo.version=${VERSION} -X github.com/swarmtrain/swarmtrain/internal/buildinfo.commit=${COMMIT}" \
      -o /out/swarmtrain ./cmd/swarmtrain \
 && /out/swarmtrain version

# bookworm-slim has the glibc the cgo build links against.
FROM debian:bookworm-slim
RUN useradd --uid 10001 --user-group --home-dir /var/lib/swarmtrain --create-home --shell /usr/sbin/nologin swarmtrain
COPY --from=build /out/swarmtrain /usr/local/bin/swarmtrain
COPY LICENSE /usr/share/doc/swarmtrain/LICENSE
USER swarmtrain
WORKDIR /var/lib/swarmtrain
VOLUME /var/lib/swarmtrain
# libp2p (TCP, and UDP for QUIC in an --open swarm), then --http.
EXPOSE 4001/tcp 4001/udp 9090/tcp
ENV SWARMTRAIN_LOG_FORMAT=json
ENTRYPOINT ["swarmtrain"]
CMD ["node", "--help"]
