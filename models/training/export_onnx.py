"""Exports out/reference.pt to models/cxr-reference-v1.onnx (opset 18,
dynamic batch) and checks ONNX Runtime against PyTorch on real inputs.

    .venv-train/bin/python models/training/export_onnx.py
"""
import numpy as np
import onnx
import onnxruntime as ort
import torch

from common import OUT, ROOT, SIZE, ReferenceNet, load_set

TARGET = ROOT.parent / "cxr-reference-v1.onnx"


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="reference.pt", help="checkpoint in out/")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = ReferenceNet()
    model.load_state_dict(torch.load(OUT / args.checkpoint, map_location="cpu"))
    model.eval()
    example = torch.zeros(2, 1, SIZE, SIZE)
    torch.onnx.export(
        model, (example,), str(TARGET), dynamo=False, opset_version=18,
        input_names=["image"], output_names=["scores", "heatmaps"],
        dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}, "heatmaps": {0: "batch"}},
    )
    m = onnx.load(str(TARGET))
    m.producer_name = "cxr-triage models/training (reference model, not for clinical use)"
    m.doc_string = ("cxr-reference-v1: NOT FOR CLINICAL USE. Trained on synthetic radiographs to test "
                    "and benchmark the cxr-triage pipeline. See models/cxr-reference-v1.md.")
    onnx.checker.check_model(m)
    onnx.save(m, str(TARGET))

    images, rows, *_ = load_set("val")
    x = np.asarray(images[rows[:16]], np.float32) * 2 - 1
    with torch.no_grad():
        ts, tm = (t.numpy() for t in model(torch.from_numpy(x)))
    sess = ort.InferenceSession(str(TARGET), providers=["CPUExecutionProvider"])
    os_, om = sess.run(["scores", "heatmaps"], {"image": x})
    # Compare probabilities (what the service uses); logits reach ±30, where
    # float32 rounding alone differs by ~1e-4.
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    diff = max(float(np.abs(sig(ts) - sig(os_)).max()), float(np.abs(sig(tm) - sig(om)).max()))
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes); max |ORT - torch| probability = {diff:.2e}")
    assert diff < 1e-5, diff


if __name__ == "__main__":
    main()
