#!/usr/bin/env bash
# Create (or update) the Kubernetes Secrets the manifests mount, from the files deploy/make-secrets.sh writes:
#   avatar-engine-keys      AVATAR_API_KEYS        <- engine_api_keys       (keys the gRPC server accepts)
#   avatar-session-secret   AVATAR_SESSION_SECRET  <- session_secret        (shared by every engine replica;
#                                                     32 random bytes written here when the file is missing)
#   avatar-cloud-keys       AVATAR_LLM_API_KEY, AVATAR_OPENAI_API_KEY, AVATAR_ELEVENLABS_API_KEY
#                                                  <- llm_api_key, openai_api_key, elevenlabs_api_key
#   avatar-bridge-keys      AVATAR_API_KEYS        <- bridge_api_keys       (keys API users send to the bridge)
#                           AVATAR_GRPC_API_KEY    <- bridge_grpc_api_key   (the bridge's key to the engine)
#   avatar-tls              kubernetes.io/tls      <- proxy-tls.crt, proxy-tls.key (the Ingress' certificate)
# Usage: create-secrets.sh [NAMESPACE (avatar)] [DIR (deploy/secrets)]. With DRY_RUN=1 the Secrets are printed
# as YAML (kubectl's client-side dry run, no cluster needed) instead of applied. Values are never printed
# otherwise; each Secret is applied with `kubectl apply`, so running this again updates them.
set -euo pipefail
namespace=${1:-avatar}
dir=${2:-$(dirname -- "$0")/../secrets}
for file in engine_api_keys bridge_api_keys bridge_grpc_api_key llm_api_key openai_api_key elevenlabs_api_key \
    proxy-tls.crt proxy-tls.key; do
    [[ -f "$dir/$file" && -r "$dir/$file" ]] || {
        echo "create-secrets.sh: $dir/$file is missing or unreadable: run deploy/make-secrets.sh HOSTNAME first" >&2
        exit 1
    }
done
if [[ ! -e "$dir/session_secret" ]]; then
    (umask 077 && openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n' >"$dir/session_secret")
    echo "created $dir/session_secret" >&2
fi

emit() {  # a Secret's YAML from `kubectl create secret ...` arguments
    kubectl create secret "$@" --namespace "$namespace" --dry-run=client -o yaml
}
secrets() {
    emit generic avatar-engine-keys --from-file=AVATAR_API_KEYS="$dir/engine_api_keys"
    echo ---
    emit generic avatar-session-secret --from-file=AVATAR_SESSION_SECRET="$dir/session_secret"
    echo ---
    emit generic avatar-cloud-keys --from-file=AVATAR_LLM_API_KEY="$dir/llm_api_key" \
        --from-file=AVATAR_OPENAI_API_KEY="$dir/openai_api_key" \
        --from-file=AVATAR_ELEVENLABS_API_KEY="$dir/elevenlabs_api_key"
    echo ---
    emit generic avatar-bridge-keys --from-file=AVATAR_API_KEYS="$dir/bridge_api_keys" \
        --from-file=AVATAR_GRPC_API_KEY="$dir/bridge_grpc_api_key"
    echo ---
    emit tls avatar-tls --cert="$dir/proxy-tls.crt" --key="$dir/proxy-tls.key"
}

if [[ "${DRY_RUN:-0}" == 1 ]]; then
    secrets
    exit 0
fi
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
secrets | kubectl apply -f -
