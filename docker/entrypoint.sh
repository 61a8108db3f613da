#!/usr/bin/env bash
# The container's entrypoint (under tini): secrets from files, then the models volume, then the command.
#
# 1. Secrets: each file in $AVATAR_SECRETS_DIR (/run/secrets, where compose mounts `secrets:`) named like an
#    AVATAR_ variable (e.g. AVATAR_API_KEYS) is exported as that variable: lines joined by commas, blank and
#    '#' lines dropped. Values are never printed, and they stay out of the image and of `docker inspect`.
# 2. Models (unless AVATAR_SEED_MODELS=false, as for the bridge): each file baked into /opt/models that the
#    volume lacks is copied into it atomically (a temporary file in the target folder, then a rename), so an
#    interrupted start never leaves a half-written model behind; the volume's files are then checked against
#    the image's sha256 manifest (/opt/models.sha256: the hashes of the files the build checked against
#    deploy/models.sha256); AVATAR_VERIFY_MODELS=false skips that check.
# Any failure stops the container with a message saying what and where, and a non-zero exit.
set -euo pipefail

fail() {
    echo "avatar-entrypoint: $*" >&2
    exit 1
}

load_secrets() {
    local dir=${AVATAR_SECRETS_DIR:-/run/secrets}
    [[ -d "$dir" ]] || return 0
    local file name value
    for file in "$dir"/AVATAR_*; do
        [[ -e "$file" ]] || continue
        name=${file##*/}
        [[ "$name" =~ ^AVATAR_[A-Z0-9_]+$ ]] || fail "secret file $file: the name must be an AVATAR_ variable name"
        [[ -f "$file" && -r "$file" ]] || fail "secret file $file is not a readable file (uid $(id -u) reads it)"
        value=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' -- "$file" | tr -d '\r' | paste -sd, -) ||
            value=""
        export "$name=$value"
        echo "avatar-entrypoint: $name from $file"
    done
}

seed_models() {
    local source=${AVATAR_MODELS_SOURCE:-/opt/models}
    local target=${AVATAR_MODELS_DIR:-/app/checkpoints}
    local manifest=${AVATAR_MODELS_MANIFEST:-/opt/models.sha256}
    [[ -d "$source" ]] || fail "the baked-in models folder $source is missing"
    mkdir -p -- "$target" 2>/dev/null || fail "cannot create the models folder $target"
    [[ -w "$target" ]] || fail "the models folder $target is not writable by uid $(id -u):" \
        "on the host, chown -R $(id -u) the folder mounted there (./models)"
    # Leftovers of an interrupted copy are never used: they carry a temporary name.
    find "$target" -name '.avatar-partial.*' -type f -delete
    local copied=0 file rel dest tmp
    while IFS= read -r -d '' file; do
        rel=${file#"$source"/}
        dest="$target/$rel"
        [[ -e "$dest" ]] && continue
        mkdir -p -- "$(dirname -- "$dest")" || fail "cannot create $(dirname -- "$dest")"
        tmp=$(mktemp "$(dirname -- "$dest")/.avatar-partial.XXXXXX") || fail "cannot create a file in $(dirname -- "$dest")"
        if ! { cp -- "$file" "$tmp" && chmod --reference="$file" -- "$tmp"; }; then
            rm -f -- "$tmp"
            fail "copying $file to $dest failed (is the disk full?)"
        fi
        mv -f -- "$tmp" "$dest" || fail "renaming $tmp to $dest failed"
        copied=$((copied + 1))
    done < <(find "$source" -type f -print0)
    echo "avatar-entrypoint: $copied model file(s) copied into $target"
    if [[ "${AVATAR_VERIFY_MODELS:-true}" != false ]]; then
        avatar-verify-models "$manifest" "$target" ||
            fail "the models in $target do not match $manifest (see above); replace or delete the files named"
    fi
}

load_secrets
if [[ "${AVATAR_SEED_MODELS:-true}" != false ]]; then
    seed_models
fi
exec "$@"
