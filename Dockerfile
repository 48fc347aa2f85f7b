# syntax=docker/dockerfile:1
# Build: docker build -t netfilter_exporter .
# Run:   docker run --rm --network host --cap-drop ALL --cap-add NET_ADMIN netfilter_exporter
# The build stage runs the same `make build` that CI's `make test` runs.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build

FROM gcr.io/distroless/static-debian12
COPY --from=build /src/netfilter_exporter /bin/netfilter_exporter
EXPOSE 9862
ENTRYPOINT ["/bin/netfilter_exporter"]
