#!/usr/bin/env bash
# Starts the avatar server (gRPC, 127.0.0.1:50051) and the REST bridge that serves the widget
# (http://127.0.0.1:8000); Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
"$BIN/python" -m avatar_server &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT INT TERM
echo "avatar_server starting (pid $SERVER); the widget will be at http://127.0.0.1:${AVATAR_BRIDGE_PORT:-8000}"
"$BIN/python" -m rest_bridge
