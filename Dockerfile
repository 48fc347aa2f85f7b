# syntax=docker/dockerfile:1
# Build: docker build -t netfilter_exporter .
# Run:   docker run --rm --network host --cap-drop ALL --cap-add NET_ADMIN netfilter_exporter
#
# The build stage runs the same `make build` and `setcap` that CI runs (make
# test builds the binary; TestNonRootWithNetAdmin gives a copy the same file
# capability and runs it as this image's user with only CAP_NET_ADMIN).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build
RUN setcap cap_net_admin=ep netfilter_exporter

# distroless static, user nonroot (65532). CAP_NET_ADMIN comes from the
# binary's file capability, within the bounding set docker run grants.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/netfilter_exporter /bin/netfilter_exporter
USER 65532:65532
EXPOSE 9862
ENTRYPOINT ["/bin/netfilter_exporter"]
