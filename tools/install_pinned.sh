#!/usr/bin/env bash
# Install the pinned closure (constraints.txt, compiled from requirements.in by `make lock`)
# with uv, exactly, without resolving again:
#
#   tools/install_pinned.sh UV [uv pip install target options...]
#   tools/install_pinned.sh .venv/bin/uv --python .venv/bin/python     (make setup)
#   tools/install_pinned.sh uv --system --no-cache                     (kubeflow/Dockerfile)
#
# ml-metadata and tensorflow-data-validation 1.21 exist only as manylinux_2_39 wheels, so
# those two, and only those, are installed for that platform tag (tools/glibc_compat.py then
# makes them load where glibc is older); every other package is chosen for the host.
set -euo pipefail
uv="$1"; shift
here="$(cd "$(dirname "$0")" && pwd)"
lock="$here/../constraints.txt"
only_2_39='^(ml-metadata|tensorflow-data-validation)=='
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
grep -v -E "$only_2_39" "$lock" > "$tmp/host.txt"
grep -E "$only_2_39" "$lock" > "$tmp/manylinux_2_39.txt"
"$uv" pip install "$@" --no-deps -r "$tmp/host.txt"
"$uv" pip install "$@" --no-deps --python-platform "$(uname -m)-manylinux_2_39" -r "$tmp/manylinux_2_39.txt"
