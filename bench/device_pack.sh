#!/usr/bin/env bash
# Packs the Python packages that the lent GPU machine lacks (Ray, pydantic and what they need) for
# its Python 3.12 into .whl/site.tar.xz, for bench/device_check.sh to unpack there. That machine
# reaches no package registry, and a call carries at most 64 MiB: Ray's wheel alone is 79 MB, so
# the parts a local Tune run never loads (Java workers, RLlib, the dashboard's source map) are left
# out; what remains is about 30 MB compressed.
#
#   bench/device_pack.sh            # once, here (pip downloads from the registry)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYVER=${PYVER:-3.12}           # the GPU machine's Python
DEST=${DEST:-.whl/site.tar.xz}
# The versions this project's environment has (pydantic needs its own pydantic-core exactly).
PKGS=(ray==2.60.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
      typing-inspection==0.4.5 typing-extensions==4.16.0 jsonschema==4.26.0
      jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
      tensorboardX==2.6.5)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$tmp/w" "${PKGS[@]}"
mkdir -p "$tmp/site" "$(dirname "$DEST")"
for w in "$tmp"/w/*.whl; do
    unzip -q -o "$w" -d "$tmp/site"  # a wheel's files are its site-packages entries (modes kept)
done
rm -rf "$tmp"/site/ray/jars "$tmp"/site/ray/rllib "$tmp"/site/ray/dashboard/client/build/static/js/*.map
tar -C "$tmp/site" -cJf "$DEST.tmp" .
mv "$DEST.tmp" "$DEST"
ls -l "$DEST"
