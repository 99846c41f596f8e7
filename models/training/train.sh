#!/usr/bin/env bash
# Reproduces models/cxr-reference-v1.onnx end to end on a CPU machine:
# training venv, synthetic data, training, export, evaluation.
#   models/training/train.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -x .venv-train/bin/python ]] || python3 -m venv .venv-train
.venv-train/bin/pip install -q -r models/training/requirements.txt
cargo build --release --locked
models/training/make_data.sh target/release/cxr-triage
cd models/training
../../.venv-train/bin/python train_reference.py --epochs 12
../../.venv-train/bin/python export_onnx.py
../../.venv-train/bin/python evaluate.py
