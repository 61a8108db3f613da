#!/usr/bin/env bash
# Regenerates the Python code of protos/ with the pinned grpcio-tools (protoc + gRPC plugin).
# Usage: scripts/generate.sh [OUT_DIR]   (default: generated)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-generated}
rm -rf "$OUT/avatar"
mkdir -p "$OUT"
"$PY" -m grpc_tools.protoc -I protos \
  --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  protos/avatar/v1/avatar.proto
touch "$OUT/avatar/__init__.py" "$OUT/avatar/v1/__init__.py"
