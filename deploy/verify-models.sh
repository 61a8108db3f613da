#!/usr/bin/env bash
# Check model files against a sha256 manifest (deploy/models.sha256).
#
#   verify-models.sh [--strict] MANIFEST DIR
#
# Every file the manifest lists must exist under DIR with that sha256. --strict (the image build) also refuses
# a file under DIR that the manifest does not list. An entry whose hash is `UNPINNED` is refused unless
# MODELS_ALLOW_UNPINNED=true; either way its computed line is printed, ready to paste into the manifest.
# Exit 0 when everything checks out, 1 otherwise (each problem named on stderr), 2 on bad usage.
set -euo pipefail

strict=false
if [[ "${1:-}" == "--strict" ]]; then
    strict=true
    shift
fi
if [[ $# -ne 2 ]]; then
    echo "usage: verify-models.sh [--strict] MANIFEST DIR" >&2
    exit 2
fi
manifest=$1
dir=${2%/}
if [[ ! -f "$manifest" ]]; then
    echo "verify-models: the manifest $manifest does not exist" >&2
    exit 1
fi
if [[ ! -d "$dir" ]]; then
    echo "verify-models: the models folder $dir does not exist" >&2
    exit 1
fi

errors=0
unpinned=0
checked=0
declare -A listed=()
line_no=0
while IFS= read -r line || [[ -n "$line" ]]; do
    line_no=$((line_no + 1))
    line=${line%$'\r'}
    [[ -z "${line//[[:space:]]/}" || "$line" == \#* ]] && continue
    if [[ ! "$line" =~ ^([0-9a-f]{64}|UNPINNED)\ \ ([^[:space:]].*)$ ]]; then
        echo "verify-models: $manifest line $line_no is not '<sha256>  <path>'" >&2
        errors=$((errors + 1))
        continue
    fi
    expected=${BASH_REMATCH[1]}
    path=${BASH_REMATCH[2]}
    if [[ "$path" == /* || "/$path/" == */../* ]]; then
        echo "verify-models: $manifest line $line_no: the path must be relative, without '..': $path" >&2
        errors=$((errors + 1))
        continue
    fi
    listed["$path"]=1
    file="$dir/$path"
    if [[ ! -f "$file" ]]; then
        echo "verify-models: missing: $file (listed in $manifest)" >&2
        errors=$((errors + 1))
        continue
    fi
    actual=$(sha256sum -- "$file" | cut -d' ' -f1)
    checked=$((checked + 1))
    if [[ "$expected" == UNPINNED ]]; then
        unpinned=$((unpinned + 1))
        echo "verify-models: unpinned (no hash in $manifest yet): $actual  $path" >&2
    elif [[ "$actual" != "$expected" ]]; then
        echo "verify-models: sha256 mismatch: $file is $actual, the manifest says $expected" >&2
        errors=$((errors + 1))
    fi
done <"$manifest"

if [[ "$strict" == true ]]; then
    while IFS= read -r -d '' file; do
        rel=${file#"$dir"/}
        if [[ -z "${listed[$rel]:-}" ]]; then
            echo "verify-models: not in the manifest: $file (add its line or stop downloading it)" >&2
            errors=$((errors + 1))
        fi
    done < <(find "$dir" \( -type f -o -type l \) -print0)
fi

if [[ $unpinned -gt 0 && "${MODELS_ALLOW_UNPINNED:-false}" != true ]]; then
    echo "verify-models: $unpinned file(s) have no recorded sha256; paste the lines above into $manifest" >&2
    echo "verify-models: (or build once with MODELS_ALLOW_UNPINNED=true to accept them unchecked)" >&2
    errors=$((errors + 1))
fi
if [[ $errors -gt 0 ]]; then
    echo "verify-models: FAILED: $errors problem(s) in $dir against $manifest" >&2
    exit 1
fi
echo "verify-models: $checked file(s) in $dir match $manifest ($unpinned unpinned)"
