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

# name count seed size (columns x rows, or "mixed": synth's default, a
# 35-43 cm detector at 0.10-0.20 mm, up to 3000 px a side) nodule-contrast.
# Stages 1 and 2 train on train-a..c, stage 3 on a..f (all at contrast 3);
# stage 4 on a mixture that covers synth's defaults: train-a (contrast 3)
# and train-g..j (contrasts 1 and 2, small and full-size films).
# Validation chooses checkpoints (val, then val-d at the default contrast)
# and operating points (val-d); held-out sets (other seeds) are only scored,
# per nodule contrast and film size.
SETS=(
  "train-a 4000 1001 512x512 3"
  "train-b 1500 1002 448x576 3"
  "train-c 1000 1003 608x480 3"
  "train-d 2500 1004 464x592 3"
  "train-e 2000 1005 592x464 3"
  "train-f 2000 1006 512x512 3"
  "train-g 3000 1007 512x512 1"
  "train-h 2000 1008 464x592 1"
  "train-i 1500 1009 512x512 2"
  "train-j 1000 1010 mixed 1"
  "val 800 2001 512x512 3"
  "val-d 800 2002 512x512 1"
  "heldout-a 500 3001 512x512 3"
  "heldout-b 300 3002 480x600 3"
  "heldout-c 300 3003 576x448 3"
  "heldout-d 500 3004 512x512 1"
  "heldout-e 400 3005 512x512 2"
  "heldout-f 300 3006 mixed 1"
  "heldout-g 200 3007 mixed 3"
)
ONLY=${ONLY:-}  # space-separated set names to make (default: all)
for set in "${SETS[@]}"; do
  read -r name count seed size contrast <<<"$set"
  if [[ -n "$ONLY" && " $ONLY " != *" $name "* ]]; then continue; fi
  if [[ -f "$DATA/$name.npy" ]]; then continue; fi
  rm -rf "$DATA/$name"
  "$SYNTH" --out "$DATA/$name" --count "$count" --seed "$seed" --size "$size" \
    --view frontal --modality mixed --photometric mixed --bits mixed \
    --nodule-contrast "$contrast" >/dev/null
  "$BIN" preprocess --width 256 --height 256 --resize letterbox --interpolation area \
    --out "$DATA/$name" "$DATA/$name"/*.dcm
  rm -f "$DATA/$name"/*.dcm   # keep ground_truth.jsonl and labels.csv, not the DICOM
done
