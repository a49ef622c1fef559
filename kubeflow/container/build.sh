#!/usr/bin/env bash
# `make image`: build kubeflow/Dockerfile here, from nothing.
#
#   kubeflow/container/build.sh [cpu|gpu] [IMAGE]
#
# Starts the project's Docker engine when none answers (engine.sh), makes the Debian base
# image when it cannot be pulled (base_image.sh), passes the host's CA bundle to the build
# stage (a TLS-inspecting proxy between the build and the package registries), builds, and
# prints the image's size and build time. The Beam boot stage is built only when Beam's SDK
# image can be pulled; otherwise the `pipeline` stage is the image (see the Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/../.."
variant="${1:-cpu}"
tag="$(git rev-parse --short=10 HEAD 2>/dev/null || echo dev)"
suffix=""; [ "$variant" = cpu ] || suffix="-$variant"
image="${2:-ghcr.io/emotion-ai/emotion-ai-pipeline:$tag$suffix}"
kubeflow/container/engine.sh start
export DOCKER_HOST="$(kubeflow/container/engine.sh host)"
debian="$(grep -oP '^ARG DEBIAN=\K\S+' kubeflow/Dockerfile)"
kubeflow/container/base_image.sh "$debian"
ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
rm -f kubeflow/build-ca.crt
[ -f "$ca" ] && cp "$ca" kubeflow/build-ca.crt
trap 'rm -f kubeflow/build-ca.crt' EXIT
beam="$(grep -oP '^FROM \K\S+(?= AS beam$)' kubeflow/Dockerfile)"
if docker image inspect "$beam" >/dev/null 2>&1 || timeout 60 docker pull -q "$beam" >/dev/null 2>&1; then
  target=beam-worker
else
  target=pipeline
  echo "build: $beam cannot be pulled here: building the 'pipeline' stage, without Beam's boot entry point"
fi
start=$(date +%s)
docker build --network host -f kubeflow/Dockerfile --target "$target" --build-arg TENSORFLOW="$variant" -t "$image" .
seconds=$(( $(date +%s) - start ))
size="$(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1/1e9}')"
line="image: $image (stage $target, TensorFlow $variant): $size, built in $seconds s"
echo "$line"
echo "$image" > kubeflow/container/.last-image
echo "$line" > kubeflow/container/.last-build
