# syntax=docker/dockerfile:1
#
# stepflash container image: one static binary on a distroless base.
#
#   docker build -t REGISTRY/stepflash:TAG .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/stepflash:TAG --push .
#
# Base images are pinned by tag. To pin them by digest as well (reproducible
# builds, no silent base updates), look the digest up and append it:
#   docker buildx imagetools inspect golang:1.26.8-bookworm
#   FROM golang:1.26.8-bookworm@sha256:<digest> AS build
# and likewise for the final stage's image. Tools such as Renovate or
# Dependabot can keep digest pins current.
#
# This file is checked as text by deploy/manifests_test.go (no Docker engine
# is available where the tests run).

# ---- build stage ------------------------------------------------------------
# Runs on the build machine's own platform and cross-compiles for the target
# (no emulation): the binary is pure Go (CGO_ENABLED=0).
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
# The commit `stepflash version` reports: .git is not in the build context
# (.dockerignore), so pass it: --build-arg COMMIT=$(git rev-parse HEAD).
ARG COMMIT=unknown
WORKDIR /src
COPY . .
# The same build as "make build". GOEXPERIMENT=simd selects the SIMD kernels
# on amd64; other architectures build the pure-Go kernels from the same
# command.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} GOEXPERIMENT=simd \
    go build -trimpath -ldflags "-X main.buildCommit=${COMMIT}" -o /out/stepflash ./cmd/stepflash \
 && mkdir -p /out/models

# ---- final stage ------------------------------------------------------------
# distroless/static: CA certificates (for HTTPS upstreams such as
# https://api.stepfun.ai/v1), /etc/passwd with the "nonroot" user (65532),
# tzdata; no shell and no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/stepflash /stepflash
# An empty /models owned by the runtime user, so that a fresh anonymous or
# named volume mounted there is writable by it.
COPY --from=build --chown=65532:65532 /out/models /models
# Where "stepflash pull" and "stepflash serve -m REPO:FILE" keep GGUF files.
ENV STEPFLASH_CACHE=/models
VOLUME ["/models"]
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/stepflash"]
CMD ["serve", "--addr", "0.0.0.0:8000"]
