#!/usr/bin/env bash
# Installs what cxr-triage needs on a fresh Debian/Ubuntu machine that has
# Rust, Python 3 and pip. Idempotent: re-running skips what is present.
#
#   scripts/setup.sh run    build tools + ONNX Runtime (from PyPI) in .venv
#   scripts/setup.sh test   the above + dcmtk and the Python test tools
#
# Nothing is fetched from anywhere but Debian's archive and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-run}

packages=(cmake g++ make)
if [ "$purpose" = test ]; then
  packages+=(dcmtk dicom3tools openjph-tools libopenjp2-tools openssl orthanc curl systemd podman runc catatonit mmdebstrap postgresql nginx chromium)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

apt_install() {
  "${sudo_cmd[@]}" apt-get update -qq
  # Installing a server (PostgreSQL, nginx) must not start one on the
  # machine's ports: the tests start their own, on private ports.
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$guard" >/dev/null
    "${sudo_cmd[@]}" chmod 755 "$guard"
  fi
  local rc=0
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  if [ -n "$guard" ]; then "${sudo_cmd[@]}" rm -f "$guard"; fi
  return $rc
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  if ! python3 -m venv .venv 2>/dev/null; then
    rm -rf .venv
    pyver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python${pyver}-venv" || apt_install python3-venv
    python3 -m venv .venv
  fi
fi

requirements=(-r models/requirements-runtime.txt)
if [ "$purpose" = test ]; then
  requirements+=(-r test-images/requirements.txt -r examples/python/requirements.txt -r tests/web/requirements.txt -r tests/interop/requirements.txt)
fi
stamp=.venv/.cxr-setup-$purpose
if [ ! -f "$stamp" ] || [ -n "$(find models/requirements-runtime.txt test-images/requirements.txt examples/python/requirements.txt tests/web/requirements.txt tests/interop/requirements.txt scripts/setup.sh -newer "$stamp" 2>/dev/null)" ]; then
  echo "setup: installing Python packages (${purpose})"
  .venv/bin/python -m pip install -q --disable-pip-version-check "${requirements[@]}"
  touch "$stamp"
fi

# ONNX Runtime's shared library comes from the onnxruntime wheel; `ort` loads
# it at run time (load-dynamic), so the build itself downloads nothing.
lib=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n 1)
if [ -z "$lib" ]; then
  echo "setup: libonnxruntime.so not found in .venv" >&2
  exit 1
fi
echo "setup: ONNX Runtime library: $lib"
