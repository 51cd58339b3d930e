#!/usr/bin/env bash
# Wheels for running ffwatt (and bench/gpu_check.py) on a GPU machine with no internet:
# ffwatt's dependencies built for that machine's Python (3.12, x86-64), minus what its image
# already has. Run here, then carry .whl/ there (docs/gpu.md says how).
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION=${PY_VERSION:-3.12}
DEST=${DEST:-.whl}
# Already in the lent machines' image (KINDS.md, "Python packages already there"): not carried.
PRESENT="numpy pandas pyarrow scipy matplotlib pyyaml rich typer httpx httpcore h11 anyio idna certifi
prometheus_client nvidia_ml_py pytest pytest_timeout packaging pillow contourpy cycler fonttools kiwisolver
pyparsing python_dateutil six click markdown_it_py mdurl pygments typing_extensions jinja2 markupsafe
attrs fsspec cloudpickle sympy mpmath networkx filelock psutil urllib3 requests charset_normalizer
shellingham protobuf grpcio setuptools wheel pip"
mkdir -p "$DEST"
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --dest "$DEST" --only-binary=:all: --python-version "$PY_VERSION" \
  --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 --platform any \
  ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
for name in $PRESENT; do
  rm -f "$DEST"/"$name"-*.whl "$DEST"/"${name//_/-}"-*.whl
done
rm -f "$DEST"/ffwatt-*
du -sh "$DEST"
