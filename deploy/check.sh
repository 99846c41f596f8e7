#!/usr/bin/env bash
# Validates deploy/ offline, as `make test` runs it:
#  - yamllint on every YAML file;
#  - `kubectl kustomize` renders each overlay (cpu, gpu, campaign, cluster), and
#    kubernetes-validate --strict checks the output (and the extras)
#    against the Kubernetes 1.37 schema (offline; both from PyPI);
#  - `systemd-analyze verify` on the systemd unit, with ExecStart pointed
#    at the binary just built (it checks that the executable exists).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv/bin
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$venv/yamllint" -s -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, comments: {min-spaces-from-content: 1}, braces: {max-spaces-inside: 1}}}' deploy
echo "deploy: yamllint clean"

for overlay in cpu gpu campaign cluster; do
  "$venv/kubectl" kustomize "deploy/kubernetes/overlays/$overlay" > "$out/$overlay.yaml"
  "$venv/kubernetes-validate" --strict --quiet "$out/$overlay.yaml"
  kinds=$(grep -c '^kind:' "$out/$overlay.yaml")
  echo "deploy: overlay $overlay renders $kinds objects, valid (strict, Kubernetes 1.37)"
done
"$venv/kubernetes-validate" --strict --quiet deploy/kubernetes/extras/*.yaml
echo "deploy: extras valid"

# What the overlays must say (a render that silently lost them is a defect).
grep -q 'nvidia.com/gpu: 1' "$out/gpu.yaml"
grep -q 'completionMode: Indexed' "$out/campaign.yaml"
grep -q 'JOB_COMPLETION_INDEX/4' "$out/campaign.yaml"
grep -q 'grpc:' "$out/cpu.yaml"
grep -q 'readOnlyRootFilesystem: true' "$out/cpu.yaml"
# The cluster overlay: a StatefulSet on PostgreSQL, no Deployment or
# shared volume left over, the autoscaler aimed at the StatefulSet.
grep -q '^kind: StatefulSet' "$out/cluster.yaml"
if grep -q -e '^kind: Deployment' -e 'claimName: cxr-triage-data' "$out/cluster.yaml"; then
  echo "deploy: the cluster overlay still has the base's Deployment or volume" >&2
  exit 1
fi
grep -q 'name: CXR_WORKLIST_URL' "$out/cluster.yaml"
grep -q 'port: 5432' "$out/cluster.yaml"
grep -A3 'scaleTargetRef' "$out/cluster.yaml" | grep -q 'kind: StatefulSet'

if command -v systemd-analyze >/dev/null; then
  binary=${CXR_BINARY:-$PWD/target/debug/cxr-triage}
  [ -x "$binary" ] || binary=$PWD/target/release/cxr-triage
  sed "s#/usr/local/bin/cxr-triage#$binary#" deploy/systemd/cxr-triage.service > "$out/cxr-triage.service"
  verify=$(systemd-analyze verify "$out/cxr-triage.service" 2>&1 || true)
  # Only complaints about this unit count (the host's own units are not ours).
  if echo "$verify" | grep -q "cxr-triage.service"; then
    echo "$verify" >&2
    exit 1
  fi
  echo "deploy: systemd unit verifies"
else
  echo "deploy: systemd-analyze not installed; unit not verified" >&2
  exit 1
fi
