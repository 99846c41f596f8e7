#!/usr/bin/env bash
# Builds an image offline: `deploy/container/build.sh [TAG] [cpu|cuda]`
# (default localhost/cxr-triage:cpu, cpu), from target/release/cxr-triage
# (or CXR_BINARY) and the reference model, with ONNX Runtime's library:
#  - cpu: from the onnxruntime wheel in .venv;
#  - cuda: from the onnxruntime-gpu wheel and NVIDIA's CUDA 13 / cuDNN 9
#    runtime wheels (pinned in deploy/container/requirements-cuda.txt,
#    downloaded from PyPI into target/cuda-wheels once), laid out as in a
#    site-packages so that the engine preloads them; the host provides only
#    the NVIDIA driver (the NVIDIA container toolkit mounts libcuda).
# The base, debian:bookworm-slim, is used when the machine has it;
# otherwise it is made here by mmdebstrap from the configured Debian
# archive (--variant=essential + libstdc++6, merged /usr) and imported under
# that name — no registry is contacted.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-localhost/cxr-triage:cpu}
variant=${2:-cpu}
binary=${CXR_BINARY:-target/release/cxr-triage}
base=docker.io/library/debian:bookworm-slim
[ -x "$binary" ] || { echo "build.sh: $binary not found (make build)" >&2; exit 2; }

ctx=target/image-context
rm -rf "$ctx"
mkdir -p "$ctx/models" "$ctx/lib"
cp "$binary" "$ctx/cxr-triage"
case "$variant" in
  cpu)
    ort=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n 1)
    [ -n "$ort" ] || { echo "build.sh: no libonnxruntime in .venv (scripts/setup.sh run)" >&2; exit 2; }
    cp "$ort" "$ctx/lib/libonnxruntime.so"
    ort_dylib=/opt/cxr-triage/lib/libonnxruntime.so
    ;;
  cuda)
    wheels=target/cuda-wheels
    mkdir -p "$wheels"
    python=${PYTHON:-.venv/bin/python}
    # The wheels for Linux x86_64 (the image's platform), whatever this
    # machine's Python; --no-deps: the pinned list is the whole set.
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
      --platform manylinux1_x86_64 --python-version 3.11 \
      -r deploy/container/requirements-cuda.txt -d "$wheels"
    # The shared libraries of exactly the pinned wheels, in their wheel
    # layout (site-packages/onnxruntime/capi, site-packages/nvidia/*/lib).
    "$python" - deploy/container/requirements-cuda.txt "$wheels" "$ctx/lib" <<'PY'
import fnmatch, pathlib, re, sys, zipfile
requirements, wheels, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
wanted = {
    "onnxruntime_gpu": ["onnxruntime/capi/libonnxruntime.so.*",
                        "onnxruntime/capi/libonnxruntime_providers_cuda.so",
                        "onnxruntime/capi/libonnxruntime_providers_shared.so"],
}
for line in open(requirements):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, version = line.split("==")
    key = re.sub(r"[-_.]+", "_", name).lower()
    found = [w for w in wheels.glob("*.whl")
             if re.sub(r"[-_.]+", "_", w.name.split("-")[0]).lower() == key
             and w.name.split("-")[1] == version]
    if len(found) != 1:
        sys.exit(f"build.sh: {name}=={version}: {len(found)} wheels in {wheels}")
    patterns = wanted.get(key, ["nvidia/*/lib/*.so*"])
    with zipfile.ZipFile(found[0]) as z:
        for member in z.namelist():
            if any(fnmatch.fnmatch(member, p) for p in patterns):
                z.extract(member, out)
PY
    ort=$(cd "$ctx/lib" && ls onnxruntime/capi/libonnxruntime.so.* | head -n 1)
    ort_dylib=/opt/cxr-triage/lib/$ort
    ;;
  *) echo "build.sh: variant '$variant' is cpu or cuda" >&2; exit 2 ;;
esac
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
  --build-arg ORT_DYLIB="$ort_dylib" --build-arg VARIANT="$variant" \
  -f deploy/container/Containerfile -t "$tag" "$ctx" >/dev/null
echo "build.sh: built $tag ($(podman image inspect --format '{{.Size}}' "$tag") bytes)"
