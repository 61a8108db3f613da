#!/usr/bin/env bash
# Create the secret files docker-compose.gpu.yml mounts, in DIR (default deploy/secrets), without overwriting:
#   engine_api_keys       keys the gRPC server accepts (one per line); the bridge's key is the first
#   bridge_grpc_api_key   the key the bridge sends to the server
#   bridge_api_keys       keys the bridge accepts from clients (one per line): give these to API users
#   llm_api_key, openai_api_key, elevenlabs_api_key   empty: fill in those your engines use
#   proxy-tls.crt/.key    a self-signed certificate for HOSTNAME, for a first try only: replace it with your
#                         CA's (or Let's Encrypt's) certificate and key
# Keys are 32 random bytes (base64url); files are mode 0600. Then give the containers' users read access:
#   sudo chown 10001 DIR/engine_api_keys DIR/bridge_* DIR/*_api_key && sudo chown 101 DIR/proxy-tls.*
set -euo pipefail
hostname=${1:?usage: make-secrets.sh HOSTNAME [DIR]}
dir=${2:-$(dirname -- "$0")/secrets}
mkdir -p -- "$dir"
umask 077

key() { openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n'; }
write() {  # write FILE from stdin unless it exists
    if [[ -e "$dir/$1" ]]; then
        echo "kept    $dir/$1"
        cat >/dev/null
    else
        cat >"$dir/$1"
        echo "created $dir/$1"
    fi
}

if [[ ! -e "$dir/bridge_grpc_api_key" ]]; then
    grpc_key=$(key)
    printf '%s\n' "$grpc_key" | write bridge_grpc_api_key
    printf '%s\n' "$grpc_key" | write engine_api_keys
else
    echo "kept    $dir/bridge_grpc_api_key"
fi
key | write bridge_api_keys
for name in llm_api_key openai_api_key elevenlabs_api_key; do
    : | write "$name"
done
if [[ ! -e "$dir/proxy-tls.crt" ]]; then
    openssl req -x509 -newkey rsa:3072 -sha256 -days 90 -nodes -subj "/CN=$hostname" \
        -addext "subjectAltName=DNS:$hostname" -keyout "$dir/proxy-tls.key" -out "$dir/proxy-tls.crt" 2>/dev/null
    echo "created $dir/proxy-tls.crt, $dir/proxy-tls.key (self-signed, 90 days: replace with a real certificate)"
else
    echo "kept    $dir/proxy-tls.crt"
fi
