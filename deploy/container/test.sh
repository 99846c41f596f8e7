#!/usr/bin/env bash
# The container image as a hospital runs it, offline (`make test`):
# builds it (deploy/container/build.sh, from the debug binary unless
# CXR_BINARY says otherwise), checks what it declares (non-root user,
# HEALTHCHECK), runs it with a read-only root filesystem, no capabilities
# and the machine's own ulimits, waits for its HEALTHCHECK to pass (models
# warm), sends it a real radiograph over DICOM and finds it on the
# worklist in the data volume, checks that the patient data there is the
# service user's alone, and stops it with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=localhost/cxr-triage:test
name=cxr-image-test-$$
work=$(mktemp -d)
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  podman rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

started=$(date +%s)
CXR_BINARY=${CXR_BINARY:-target/debug/cxr-triage} deploy/container/build.sh "$tag"
echo "image: built in $(($(date +%s) - started)) s"

user=$(podman image inspect --format '{{.Config.User}}' "$tag")
[ "$user" = "10001:10001" ] || { echo "image: runs as '$user', not 10001" >&2; exit 1; }
podman image inspect --format '{{json .Config.Healthcheck}}' "$tag" | grep -q '"health"' \
  || { echo "image: no HEALTHCHECK" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); health=$(free_port); dicom=$(free_port); web=$(free_port)
data=$work/data
mkdir -m 0700 "$data"
chown 10001:10001 "$data"
cat > "$work/cxr.toml" <<TOML
listen = "127.0.0.1:$port"
health_listen = "127.0.0.1:$health"
data_dir = "/var/lib/cxr-triage"

[web]
listen = "127.0.0.1:$web"

[engine]
models_dir = "/opt/cxr-triage/models"

[engine.session]
provider = "cpu"

[dicom]
enabled = true
ae_title = "CXR_TRIAGE"
listen = "127.0.0.1:$dicom"
allowed_calling_aes = ["STORESCU"]
TOML
chmod 0644 "$work/cxr.toml"

# ulimits at or below the machine's hard limits (conmon caps nproc at 32768).
nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile" -gt 65536 ] && nofile=65536
nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] && nproc=32768
[ "$nproc" -gt 32768 ] && nproc=32768

podman run -d --name "$name" --runtime runc --network host \
  --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
  --health-interval disable \
  --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
  -e CXR_METRICS_LISTEN=off -e "CXR_HEALTH_ADDR=http://127.0.0.1:$health" \
  -v "$data:/var/lib/cxr-triage" -v "$work/cxr.toml:/etc/cxr-triage/cxr.toml:ro" \
  "$tag" >/dev/null 2>"$work/podman.err" || { cat "$work/podman.err" >&2; exit 1; }
# (podman 4.3 logs that it cannot reach systemd for periodic health
# checks; the checks are run here with `podman healthcheck run`.)

for _ in $(seq 180); do
  if podman healthcheck run "$name" >/dev/null 2>&1; then break; fi
  sleep 1
done
podman healthcheck run "$name" >/dev/null || { podman logs "$name" >&2; echo "image: never healthy" >&2; exit 1; }
echo "image: healthy (its HEALTHCHECK: models warm, SERVING) after $(($(date +%s) - started)) s"

storescu -aet STORESCU -aec CXR_TRIAGE -to 30 127.0.0.1 "$dicom" test-images/generated/RG1_UNCR.dcm \
  || { podman logs "$name" >&2; exit 1; }
listed=0
for _ in $(seq 120); do
  listed=$(python3 -c "import sqlite3,sys; print(sqlite3.connect('file:$data/worklist.sqlite?mode=ro', uri=True).execute('SELECT COUNT(*) FROM images').fetchone()[0])" 2>/dev/null || echo 0)
  [ "$listed" -ge 1 ] && break
  sleep 0.5
done
[ "$listed" -ge 1 ] || { podman logs "$name" >&2; echo "image: the film never reached the worklist" >&2; exit 1; }
echo "image: a radiograph sent by C-STORE is on the worklist"

mode=$(stat -c '%a %u' "$data/worklist.sqlite")
[ "$mode" = "600 10001" ] || { echo "image: worklist.sqlite is '$mode', not 600 of 10001" >&2; exit 1; }

# The rendered CPU Deployment under `podman kube play` (host network,
# loopback configuration; Secrets dropped): it comes up healthy.
kport=$(free_port); khealth=$(free_port); kweb=$(free_port)
cat > "$work/kube.toml" <<TOML
listen = "127.0.0.1:$kport"
health_listen = "127.0.0.1:$khealth"
data_dir = "/var/lib/cxr-triage"

[web]
listen = "127.0.0.1:$kweb"

[engine]
models_dir = "/opt/cxr-triage/models"

[engine.session]
provider = "cpu"
TOML
.venv/bin/kubectl kustomize deploy/kubernetes/overlays/cpu > "$work/cpu.yaml"
.venv/bin/python deploy/container/kube_smoke.py "$work/cpu.yaml" "$work/kube.toml" "$tag" > "$work/smoke.yaml"
printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\nruntime = "runc"\n' \
  "$nofile" "$nofile" "$nproc" "$nproc" > "$work/containers.conf"
# The claim's volume, made first so that the service user owns it (what
# fsGroup does on a cluster).
podman volume rm -f cxr-triage-data cxr-triage-config >/dev/null 2>&1 || true
podman volume create cxr-triage-data >/dev/null
kube_data=$(podman volume inspect -f '{{.Mountpoint}}' cxr-triage-data)
chown 10001:10001 "$kube_data" && chmod 0700 "$kube_data"
CONTAINERS_CONF=$work/containers.conf podman kube play --network host "$work/smoke.yaml" \
  >"$work/kube.out" 2>&1 || { cat "$work/kube.out" >&2; exit 1; }
kube_ok=0
for _ in $(seq 120); do
  if "${CXR_BINARY:-target/debug/cxr-triage}" health --addr "http://127.0.0.1:$khealth" >/dev/null 2>&1; then
    kube_ok=1; break
  fi
  sleep 1
done
podman pod logs "$(podman pod ps -q --filter name=cxr-triage-pod | head -n 1)" >"$work/kube.log" 2>&1 || true
podman kube down "$work/smoke.yaml" >/dev/null 2>&1 || true
podman volume rm -f cxr-triage-data cxr-triage-config >/dev/null 2>&1 || true
[ "$kube_ok" = 1 ] || { cat "$work/kube.out" "$work/kube.log" >&2; echo "kube play: never healthy" >&2; exit 1; }
echo "image: the rendered CPU Deployment runs under podman kube play and turns SERVING"

stop_started=$(date +%s)
podman stop -t 30 "$name" >/dev/null 2>>"$work/podman.err"
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { podman logs "$name" >&2; echo "image: exit code $code after SIGTERM" >&2; exit 1; }
echo "image: stopped cleanly by SIGTERM in $(($(date +%s) - stop_started)) s; $(podman image inspect --format '{{.Size}}' "$tag") bytes"
