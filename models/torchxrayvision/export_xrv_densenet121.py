"""Exports TorchXRayVision's DenseNet-121 "densenet121-res224-all" to ONNX for
cxr-triage (bring your own model: see README.md here). Not run in CI: the
weights come from TorchXRayVision's GitHub releases, which this project's
build never contacts. Run it on a machine that can download them, or point
--weights at a copy you already have.

    pip install torch torchxrayvision onnx
    python models/torchxrayvision/export_xrv_densenet121.py [--weights FILE.pt]
    cxr-triage models check models/torchxrayvision

The ONNX graph outputs raw logits (op_threshs normalisation off); the
manifest applies the sigmoid and carries the operating points.
"""
import argparse
import shutil
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TARGET = HERE / "xrv-densenet121-all.onnx"
WEIGHTS = "densenet121-res224-all"


def main():
    import torchxrayvision as xrv

    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path,
                    help="a local copy of nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-"
                         "tw-lr001-rot45-tr15-sc15-seed0-best.pt (else TorchXRayVision downloads it)")
    args = ap.parse_args()
    if args.weights:
        cache = Path(xrv.utils.get_cache_dir()).expanduser()
        cache.mkdir(parents=True, exist_ok=True)
        url = xrv.models.model_urls[WEIGHTS]["weights_url"]
        local = cache / Path(url).name
        if not local.exists():
            shutil.copy(args.weights, local)
    model = xrv.models.DenseNet(weights=WEIGHTS)
    model.op_threshs = None  # raw logits; the manifest applies the sigmoid
    model.eval()
    labels = list(model.pathologies)
    assert labels[11] == "Nodule" and labels[12] == "Mass" and labels[14] == "Lung Lesion", labels
    example = torch.zeros(1, 1, 224, 224)
    torch.onnx.export(model, (example,), str(TARGET), dynamo=False, opset_version=18,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    print(f"wrote {TARGET}; labels: {labels}")


if __name__ == "__main__":
    main()
