#!/usr/bin/env bash
# Fill the mounted checkpoints folder with the models baked into the image (existing files are kept).
set -euo pipefail
mkdir -p /app/checkpoints
cp -rn /opt/models/. /app/checkpoints/ 2>/dev/null || true
exec "$@"
