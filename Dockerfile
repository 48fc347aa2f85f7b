# syntax=docker/dockerfile:1
# The image, for the builder's platform or several, from a git clone (not a
# worktree: .git is part of the context, for the revision and the build
# date). `make image` passes the labels' build arguments:
#   make image                                  # netfilter_exporter:<VERSION>
#   make image DOCKER="docker buildx" IMAGE_PLATFORMS=linux/amd64,linux/arm64 \
#       IMAGE=<registry>/netfilter_exporter:<VERSION> IMAGE_FLAGS=--push
# Run as the container's user 0 with CAP_NET_ADMIN as its only capability:
#   docker run --rm --network host --cap-drop ALL --cap-add NET_ADMIN netfilter_exporter:0.2.0
#
# The build stage runs on the builder's platform and cross-compiles (no
# cgo) for the target's; its RUN lines are run by TestDockerfileBuildStage
# in a copy of a clone filtered by .dockerignore, as CI runs them. The build
# is reproducible: SOURCE_DATE_EPOCH (make image passes the last commit's
# time; BuildKit also dates the image by it) is the binary's build date.
#
# No file capability: one on the binary makes exec fail (EPERM, before the
# exporter can say anything) wherever NET_ADMIN is not in the bounding set.
# As user 0 with --cap-drop ALL --cap-add NET_ADMIN the process holds
# CAP_NET_ADMIN and nothing else, under no_new_privs too; run as another
# user it holds no capability, starts, and every netfilter collector fails
# naming CAP_NET_ADMIN (docs/deploy.md, Container).

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS TARGETARCH SOURCE_DATE_EPOCH
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH make build

# distroless static (no C library, no shell), its root user.
FROM gcr.io/distroless/static-debian12
ARG VERSION REVISION CREATED
LABEL org.opencontainers.image.title="netfilter_exporter" \
      org.opencontainers.image.description="Prometheus exporter of Linux netfilter accounting" \
      org.opencontainers.image.source="https://github.com/netfilter-exporter/netfilter_exporter" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.created="$CREATED" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/netfilter_exporter /bin/netfilter_exporter
COPY --from=build /src/LICENSE /LICENSE
USER 0:0
EXPOSE 9862
ENTRYPOINT ["/bin/netfilter_exporter"]
