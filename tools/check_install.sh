#!/usr/bin/env bash
# What a user gets from `pip install .`, checked from outside the checkout:
#
#   tools/check_install.sh UV VENV_DIR
#
# a fresh venv; the pinned closure (tools/install_pinned.sh: pip alone cannot install
# ml-metadata 1.21 where glibc is older than 2.39); then the project with pip itself and the
# lock as constraints (no build isolation: nothing is downloaded); the glibc compatibility
# step; then every `emotion-ai` command's --help, an import of every module, and no top-level
# `kubeflow`, `data`, `pipelines`, `serving` or `components` in site-packages.
set -euo pipefail
uv="$(realpath "$1")"; venv="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON311:-python3.11}"
rm -rf "$venv"
"$python" -m venv "$venv"
py="$(realpath "$venv")/bin/python"
"$root/tools/install_pinned.sh" "$uv" --python "$py" --quiet
# Built from a copy of what setup.py packages, so the build leaves nothing in the checkout.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
(cd "$root" && cp --parents setup.py README.md serving/framing.json \
  $(find pipelines components data serving kubeflow -name '*.py' -o -name '*.pbtxt') "$src")
"$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation "$src" -c "$root/constraints.txt"
"$py" "$root/tools/glibc_compat.py" >/dev/null
cd "$(mktemp -d)"  # nothing of the checkout on sys.path
"$py" -m pip show --files emotion-ai-pipeline | sed -n '/^Files:/,$p' | tail -n +2 \
  | grep -v -E '^ *(emotion_ai/|emotion_ai_pipeline-[^/]*\.dist-info/|\.\./\.\./\.\./bin/emotion-ai$)' \
  && { echo "check_install: files outside emotion_ai/ (above)" >&2; exit 1; }
for name in kubeflow data pipelines serving components; do
  if "$py" -c "import $name" 2>/dev/null; then echo "check_install: 'import $name' works: something installed it" >&2; exit 1; fi
done
commands="$("$venv/bin/emotion-ai" --help | sed -n '/^Commands:/,$p' | tail -n +2 | awk '{print $1}')"
for command in $commands; do
  "$venv/bin/emotion-ai" "$command" --help >/dev/null
  echo "help: emotion-ai $command"
done
TF_CPP_MIN_LOG_LEVEL=3 TF_USE_LEGACY_KERAS=1 "$py" -W ignore -c '
import importlib, pkgutil, emotion_ai
names = [m.name for m in pkgutil.walk_packages(emotion_ai.__path__, "emotion_ai.")]
for name in names:
    importlib.import_module(name)
print(f"imports: {len(names)} modules")
from emotion_ai.components import branches, curated_schema
for branch in branches.BRANCHES:  # package data: what ImportSchemaGen reads in a Kubeflow pod
    print("schema:", branch.name, curated_schema.file_hash(curated_schema.source_path(branch)))
from emotion_ai.serving import framing  # package data: the crop templates predict reads
print("framing:", sorted(framing.load_templates()), ",".join(framing.landmark_names()))
' 2>/dev/null
