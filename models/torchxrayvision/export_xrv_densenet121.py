"""Exports TorchXRayVision's DenseNet-121 "densenet121-res224-all" to ONNX for
cxr-triage (bring your own model: see README.md here). Not run in CI: the
weights come from TorchXRayVision's GitHub releases, which this project's
build never contacts. Run it on a machine that can download them, or point
--weights at a copy you already have.

    pip install torch torchxrayvision==1.5.7 onnx onnxruntime
    python models/torchxrayvision/export_xrv_densenet121.py [--weights FILE.pt]
    cxr-triage models check models/torchxrayvision

The ONNX graph outputs raw logits (op_threshs normalisation off, no
sigmoid); the manifest applies the sigmoid and carries the operating points.

--random-weights builds the same network with random weights and no
download, to test the export path only (its scores mean nothing; it writes
xrv-densenet121-random.onnx so it cannot be mistaken for the real model).
"""
import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
WEIGHTS = "densenet121-res224-all"
LABELS = [
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema",
    "Emphysema", "Fibrosis", "Effusion", "Pneumonia", "Pleural_Thickening",
    "Cardiomegaly", "Nodule", "Mass", "Hernia", "Lung Lesion", "Fracture",
    "Lung Opacity", "Enlarged Cardiomediastinum",
]


def load(args, xrv):
    if args.random_weights:
        torch.manual_seed(0)
        model = xrv.models.DenseNet(weights=None, num_classes=len(LABELS))
        model.pathologies = list(xrv.models.model_urls[WEIGHTS]["labels"])
        return model
    if args.weights:
        # TorchXRayVision looks for the file under its release name in
        # cache_dir; give it that name without copying the file.
        name = os.path.basename(xrv.models.model_urls[WEIGHTS]["weights_url"])
        cache = Path(tempfile.mkdtemp(prefix="xrv-weights-"))
        (cache / name).symlink_to(args.weights.resolve())
        return xrv.models.DenseNet(weights=WEIGHTS, cache_dir=str(cache))
    return xrv.models.DenseNet(weights=WEIGHTS)  # downloads into ~/.torchxrayvision


def main():
    import torchxrayvision as xrv

    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path,
                    help="a local copy of nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-"
                         "tw-lr001-rot45-tr15-sc15-seed0-best.pt (else TorchXRayVision downloads it)")
    ap.add_argument("--random-weights", action="store_true",
                    help="random weights, no download: tests the export path only")
    ap.add_argument("--out", type=Path, help="output file (default: beside this script)")
    args = ap.parse_args()
    target = args.out or HERE / ("xrv-densenet121-random.onnx" if args.random_weights
                                 else "xrv-densenet121-all.onnx")

    model = load(args, xrv)
    model.op_threshs = None  # raw logits; the manifest applies the sigmoid
    model.apply_sigmoid = False
    model.eval()
    labels = list(model.pathologies)
    assert labels == LABELS, labels
    example = torch.zeros(1, 1, 224, 224)
    torch.onnx.export(model, (example,), str(target), dynamo=False, opset_version=18,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})

    # ONNX Runtime must agree with PyTorch on an input in xrv's range.
    import onnxruntime as ort
    x = np.random.default_rng(0).uniform(-1024, 1024, (3, 1, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(["logits"], {"image": x})[0]
    diff = float(np.abs(want - got).max())
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB); max |ORT - torch| = {diff:.2e}")
    print(f"labels: {labels}")
    assert diff < 1e-3, diff


if __name__ == "__main__":
    main()
