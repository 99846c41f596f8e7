#!/usr/bin/env bash
# The CUDA image, built offline from PyPI's wheels and inspected on a
# machine without a GPU (`make test`):
#  - deploy/container/build.sh TAG cuda (from the debug binary unless
#    CXR_BINARY says otherwise): onnxruntime-gpu and NVIDIA's CUDA 13 /
#    cuDNN 9 runtime wheels;
#  - inside the image, ONNX Runtime's CUDA provider and every library it
#    and cuDNN need resolve from the image alone, except libcuda.so.1 — the
#    driver's, which the NVIDIA container toolkit mounts on a GPU node;
#  - `models check --provider auto` in the image, which has no GPU here:
#    CUDA cannot start, the reason is given, and the model runs on the CPU
#    (what a GPU pod whose device is missing does).
# With CXR_GPU_IMAGE_RUN=1 on a GPU host with the NVIDIA container toolkit
# (CDI), it also runs `models check --provider cuda` with the GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=localhost/cxr-triage:cuda-test
work=$(mktemp -d)
cleanup() {
  podman rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work" target/image-context
}
trap cleanup EXIT

started=$(date +%s)
CXR_BINARY=${CXR_BINARY:-target/debug/cxr-triage} deploy/container/build.sh "$tag" cuda
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "cuda image: built in $(($(date +%s) - started)) s (wheels cached in target/cuda-wheels), $((size / 1048576)) MiB"

variant=$(podman image inspect --format '{{index .Config.Labels "io.cxr-triage.variant"}}' "$tag")
[ "$variant" = cuda ] || { echo "cuda image: labelled '$variant'" >&2; exit 1; }
user=$(podman image inspect --format '{{.Config.User}}' "$tag")
[ "$user" = "10001:10001" ] || { echo "cuda image: runs as '$user', not 10001" >&2; exit 1; }

nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile" -gt 65536 ] && nofile=65536
nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] && nproc=32768
[ "$nproc" -gt 32768 ] && nproc=32768
run=(podman run --rm --runtime runc --network none --read-only --tmpfs /tmp
  --cap-drop ALL --security-opt no-new-privileges --health-interval disable
  --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

# What the CUDA provider and cuDNN load, resolved inside the image with the
# wheels' library folders on the path (as the engine preloads them).
"${run[@]}" --entrypoint /bin/sh "$tag" -c '
  lib=/opt/cxr-triage/lib
  LD_LIBRARY_PATH=$(ls -d $lib/nvidia/*/lib | tr "\n" ":")$lib/onnxruntime/capi
  export LD_LIBRARY_PATH
  test -f "$ORT_DYLIB_PATH" || { echo "no $ORT_DYLIB_PATH"; exit 1; }
  for so in $lib/onnxruntime/capi/libonnxruntime_providers_cuda.so $lib/nvidia/cudnn/lib/libcudnn*.so.9 \
            $lib/nvidia/cu13/lib/libcublas.so.* $lib/nvidia/cu13/lib/libcufft.so.*; do
    ldd "$so" | grep "not found" | sed "s#^#$(basename "$so"): #"
  done | sort -u' >"$work/ldd.txt"
missing=$(grep -v 'libcuda.so.1 => not found' "$work/ldd.txt" || true)
[ -z "$missing" ] || { echo "cuda image: unresolved libraries:" >&2; echo "$missing" >&2; exit 1; }
grep -q 'libcuda.so.1 => not found' "$work/ldd.txt" \
  || { echo "cuda image: the CUDA provider does not ask for the driver's libcuda?" >&2; exit 1; }
echo "cuda image: the CUDA provider, cuBLAS, cuFFT and cuDNN resolve inside the image; only the driver's libcuda.so.1 is left to the host"

"${run[@]}" -e CXR_LOG=warn "$tag" models check --provider auto /opt/cxr-triage/models >"$work/check.out" 2>"$work/check.err" \
  || { cat "$work/check.out" "$work/check.err" >&2; echo "cuda image: models check failed" >&2; exit 1; }
why=$(grep 'GPU not used:' "$work/check.out" || true)
echo "$why" | grep -q 'cuda:' \
  || { cat "$work/check.out" "$work/check.err" >&2; echo "cuda image: no word on why CUDA did not start" >&2; exit 1; }
if echo "$why" | grep -q 'cuda: CUDA execution provider is not enabled'; then
  echo "cuda image: its ONNX Runtime has no CUDA provider (the CPU wheel's?): $why" >&2; exit 1
fi
grep -E '^cxr-reference-v1 ' "$work/check.out" | grep -qw cpu \
  || { cat "$work/check.out" >&2; echo "cuda image: the model did not fall back to the CPU" >&2; exit 1; }
echo "cuda image: $why"
echo "cuda image: without a GPU, models check says why CUDA did not start and runs the model on the CPU"

if [ "${CXR_GPU_IMAGE_RUN:-0}" = 1 ]; then
  "${run[@]}" --device nvidia.com/gpu=all "$tag" models check --provider cuda /opt/cxr-triage/models
  echo "cuda image: models check on the GPU passed"
fi
