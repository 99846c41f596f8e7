#!/usr/bin/env bash
# Reduced-resolution JPEG 2000 decoding (`[decode] jpeg2000_reduce = "auto"`)
# against full decoding on the same 1,000 held-out synthetic films (seed
# 3001, 2048 x 2048, JPEG 2000 lossless, synth's default distribution):
# `score` wall time for each, AUC from `cxr-triage evaluate`, and per film the
# score, verdict, priority and heatmap-peak changes (reduced_accuracy.py).
#   make bench-reduced   # or: benches/baseline/reduced_decode.sh [WORKDIR] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-target/bench/reduced}
COUNT=${2:-1000}
BIN=target/release/cxr-triage
mkdir -p "$WORK"
if [[ ! -f "$WORK/films/labels.csv" ]] || [[ $(ls "$WORK/films" | grep -c '\.dcm$') != "$COUNT" ]]; then
  rm -rf "$WORK/films"
  target/release/cxr-synth --out "$WORK/films" --count "$COUNT" --seed 3001 \
    --transfer-syntax j2k-lossless --size 2048x2048 | tail -1
fi
printf '[decode]\njpeg2000_reduce = "auto"\n' > "$WORK/auto.toml"
printf '[decode]\njpeg2000_reduce = "off"\n' > "$WORK/off.toml"
for mode in off auto; do
  rm -f "$WORK/$mode".sqlite* "$WORK/$mode.jsonl" "$WORK/$mode.jsonl.progress.json"
  "$BIN" score --config "$WORK/$mode.toml" --models models --provider cpu --quiet \
    --db "$WORK/$mode.sqlite" --out "$WORK/$mode.jsonl" "$WORK/films" 2>&1 | grep "^scored"
  "$BIN" evaluate --truth "$WORK/films/labels.csv" --json "$WORK/eval-$mode.json" \
    "$WORK/$mode.jsonl" 2>&1 | grep -E '^(tuberculosis|malignant_nodule):' | sed "s/^/$mode /"
done
.venv/bin/python benches/baseline/reduced_accuracy.py "$WORK/off.sqlite" "$WORK/auto.sqlite" \
  --truth "$WORK/films/labels.csv" --json "$WORK/reduced-accuracy.json"
