# syntax=docker/dockerfile:1
# Build from a git clone (not a worktree), at the release tag:
#   docker build -t netfilter_exporter:0.1.0 .
# Run, as the image's non-root user with CAP_NET_ADMIN only:
#   docker run --rm --network host --cap-drop ALL --cap-add NET_ADMIN netfilter_exporter:0.1.0
#
# Every RUN of the build stage but the apt-get line is run by
# TestDockerfileBuildStage, in a copy of a tagged clone filtered by
# .dockerignore, as CI runs them; apt-get installs the package that
# scripts/install-deps.sh installs for setcap in CI.

FROM golang:1.26-bookworm AS build
# setcap is in libcap2-bin, which the golang image lacks.
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# The whole context, .git included: make build stamps the version of the
# git tag into the binary (.dockerignore keeps .git for that).
COPY . .
RUN make build
# CAP_NET_ADMIN as a file capability lets the non-root user below hold it
# (docker run --cap-add NET_ADMIN puts it in the bounding set only). The
# COPY --from of BuildKit and buildah keeps the security.capability
# attribute. The kernel ignores file capabilities under no_new_privs
# (Kubernetes' allowPrivilegeEscalation: false, docker's
# --security-opt no-new-privileges): there, run as user 0 with NET_ADMIN as
# the only capability, as examples/daemonset.yaml does.
RUN setcap cap_net_admin=ep netfilter_exporter

# distroless static, user nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/netfilter_exporter /bin/netfilter_exporter
COPY --from=build /src/LICENSE /LICENSE
USER 65532:65532
EXPOSE 9862
ENTRYPOINT ["/bin/netfilter_exporter"]
