#!/usr/bin/env bash
# Synthetic training, validation and held-out sets for the reference model,
# made by the project's own tools: `cxr-synth` draws the radiographs (DICOM)
# and `cxr-triage preprocess` turns them into exactly the tensors serving
# feeds the model.
# Seeds are fixed, so the data are the same on every machine.
#
#   models/training/make_data.sh [BIN [SYNTH]]
#   # BIN: default target/release/cxr-triage; SYNTH: target/release/cxr-synth
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/cxr-triage}
SYNTH=${2:-target/release/cxr-synth}
DATA=models/training/data
mkdir -p "$DATA"

# name count seed size (columns x rows). Stages 1 and 2 train on train-a..c,
# stage 3 on all six; validation chooses checkpoints and operating points; held-out sets
# (other seeds and shapes) are only scored.
SETS=(
  "train-a 4000 1001 512x512"
  "train-b 1500 1002 448x576"
  "train-c 1000 1003 608x480"
  "train-d 2500 1004 464x592"
  "train-e 2000 1005 592x464"
  "train-f 2000 1006 512x512"
  "val 800 2001 512x512"
  "heldout-a 500 3001 512x512"
  "heldout-b 300 3002 480x600"
  "heldout-c 300 3003 576x448"
)
for set in "${SETS[@]}"; do
  read -r name count seed size <<<"$set"
  if [[ -f "$DATA/$name.npy" ]]; then continue; fi
  rm -rf "$DATA/$name"
  "$SYNTH" --out "$DATA/$name" --count "$count" --seed "$seed" --size "$size" \
    --view frontal --modality mixed --photometric mixed --bits mixed \
    --nodule-contrast 3 >/dev/null
  "$BIN" preprocess --width 256 --height 256 --resize letterbox --interpolation area \
    --out "$DATA/$name" "$DATA/$name"/*.dcm
  rm -f "$DATA/$name"/*.dcm   # keep ground_truth.jsonl and labels.csv, not the DICOM
done
