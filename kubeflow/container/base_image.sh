#!/usr/bin/env bash
# Make sure the Debian base image the Dockerfile names exists in the engine.
#
#   kubeflow/container/base_image.sh debian:bookworm-slim
#
# Pulled from the image registry when that answers; where it does not (this project's build
# machines reach only the package registries), the same Debian release is made from Debian's
# own packages: `debootstrap --variant=minbase` from the mirror apt already uses, then
# `docker import` under the name the Dockerfile uses, so the Dockerfile is the one users
# build against the real registry.
set -euo pipefail
name="${1:?usage: $0 debian:RELEASE-slim}"
[[ "$name" =~ ^debian:([a-z]+)-slim$ ]] || { echo "base_image: only debian:RELEASE-slim can be made here, not $name" >&2; exit 2; }
release="${BASH_REMATCH[1]}"
if docker image inspect "$name" >/dev/null 2>&1; then echo "base_image: $name is there"; exit 0; fi
if timeout 60 docker pull -q "$name" >/dev/null 2>&1; then echo "base_image: pulled $name"; exit 0; fi
if ! command -v debootstrap >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "base_image: cannot pull $name and debootstrap is missing (needs root to install)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
mirror="$(grep -rhoE '(URIs:|^deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
          | grep -oE "https?://[^ ]+" | head -1 || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
start=$(date +%s)
echo "base_image: $name cannot be pulled; making it with debootstrap --variant=minbase $release $mirror"
debootstrap --variant=minbase "$release" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; exit 1; }
# As the official slim image: no apt lists or caches in the layer.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$name" >/dev/null
rm -f "$rootfs.log"
echo "base_image: made $name from Debian packages in $(( $(date +%s) - start )) s ($(docker image inspect -f '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1/1e6}'))"
