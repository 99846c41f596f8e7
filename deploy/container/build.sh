#!/usr/bin/env bash
# Builds the CPU image offline: `deploy/container/build.sh [TAG]`
# (default localhost/cxr-triage:cpu), from target/release/cxr-triage (or
# CXR_BINARY), the onnxruntime wheel's library in .venv and the reference
# model. The base, debian:bookworm-slim, is used when the machine has it;
# otherwise it is made here by mmdebstrap from the configured Debian
# archive (--variant=essential + libstdc++6, merged /usr) and imported under
# that name — no registry is contacted.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-localhost/cxr-triage:cpu}
binary=${CXR_BINARY:-target/release/cxr-triage}
base=docker.io/library/debian:bookworm-slim
[ -x "$binary" ] || { echo "build.sh: $binary not found (make build)" >&2; exit 2; }
ort=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
[ -n "$ort" ] || { echo "build.sh: no libonnxruntime in .venv (scripts/setup.sh run)" >&2; exit 2; }

ctx=target/image-context
rm -rf "$ctx"
mkdir -p "$ctx/models"
cp "$binary" "$ctx/cxr-triage"
cp "$ort" "$ctx/libonnxruntime.so"
cp models/cxr-reference-v1.onnx models/cxr-reference-v1.toml models/cxr-reference-v1.md "$ctx/models/"
cp deploy/container/cxr.toml "$ctx/cxr.toml"
chmod -R a+rX "$ctx"

if ! podman image exists "$base"; then
  echo "build.sh: making $base with mmdebstrap (offline base)"
  mmdebstrap --quiet --variant=essential --include=libstdc++6 \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr bookworm target/image-base.tar \
    > target/image-base.log 2>&1 || { cat target/image-base.log >&2; exit 1; }
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    target/image-base.tar "$base" >/dev/null
  rm -f target/image-base.tar
fi
podman build --quiet --pull=never --network=host --format docker \
  -f deploy/container/Containerfile -t "$tag" "$ctx" >/dev/null
echo "build.sh: built $tag ($(podman image inspect --format '{{.Size}}' "$tag") bytes)"
