"""Builds a DenseNet-121-shaped model with realistic compute for benchmarks:
torchvision's densenet121 with one input channel and two outputs, seeded
random weights (its scores mean nothing; NOT FOR CLINICAL USE), input
`image` [N,1,512,512], output `scores` [N,2] logits. ~28 MB, so it is made
by this script rather than committed; with it, its fp16 variant for
CUDA/TensorRT (`--fp16` of `cxr-triage bench`), when onnxconverter-common
is installed.

    .venv-train/bin/pip install -r models/training/requirements.txt torchvision==0.29.2
    .venv-train/bin/python models/bench/make_densenet121.py
    cxr-triage models check models/bench
"""
import sys
from pathlib import Path

import torch
import torchvision

TARGET = Path(__file__).resolve().parent / "densenet121-bench.onnx"
TARGET_FP16 = TARGET.with_name("densenet121-bench-fp16.onnx")


def main():
    torch.manual_seed(121)
    model = torchvision.models.densenet121(weights=None, num_classes=2)
    model.features.conv0 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.eval()
    example = (torch.zeros(1, 1, 512, 512),)
    try:
        torch.onnx.export(model, example, str(TARGET), dynamo=False, opset_version=18,
                          input_names=["image"], output_names=["scores"],
                          dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}})
    except Exception as e:  # newer torch: the TorchScript exporter is gone
        print(f"TorchScript export failed ({e}); exporting with dynamo")
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(model, example, str(TARGET), dynamo=True, opset_version=18,
                          input_names=["image"], output_names=["scores"],
                          dynamic_shapes=({0: batch},), external_data=False)
    print(f"wrote {TARGET} ({TARGET.stat().st_size / 1e6:.1f} MB)")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
    try:
        from make_fp16 import convert
    except ImportError:
        print("onnxconverter-common not installed: no fp16 variant")
        return
    convert(TARGET, TARGET_FP16)
    print(f"wrote {TARGET_FP16} ({TARGET_FP16.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
