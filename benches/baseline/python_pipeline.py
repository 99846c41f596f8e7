#!/usr/bin/env python3
"""The scoring pipeline a site without cxr-triage would write in Python.

Usage:
    python benches/baseline/python_pipeline.py DIR [--model models/cxr-reference-v1.onnx]
        [--out scores.jsonl] [--workers N] [--threads T] [--batch 8]

Scores every *.dcm at the top level of DIR (sorted) with the model, using all
the machine's cores the way the libraries' documentation suggests:

- a concurrent.futures.ProcessPoolExecutor with --workers processes
  (default os.cpu_count()); the files are cut into batches of --batch
  (default 8) and each batch is one task;
- each worker loads the model once (pool initializer) into an
  onnxruntime.InferenceSession on the CPUExecutionProvider with
  intra_op_num_threads = --threads (default os.cpu_count()), and for each
  batch:
    decode      pydicom.dcmread + pixel_array (pylibjpeg / openjpeg / libjpeg /
                rle plugins as installed), modality LUT (Rescale Slope /
                Intercept), VOI window or LUT, scaled to [0, 1], MONOCHROME1
                inverted: pydicom_decode.pipeline, unchanged (first frame of
                a multi-frame file);
    preprocess  letterbox to the model's input as its manifest (NAME.toml
                next to NAME.onnx) describes it: aspect kept,
                cv2.resize(..., interpolation=cv2.INTER_AREA) (INTER_LINEAR /
                INTER_NEAREST for a manifest asking for bilinear / nearest),
                centred on black, then the manifest's normalisation
                (minus_one_one for cxr-reference-v1: x * 2 - 1), its channel
                count and layout;
    inference   session.run on the stacked batch (all outputs, as the graph
                computes them anyway), then the manifest's output activation
                (sigmoid for cxr-reference-v1) on the scores.

Thread settings are the libraries' defaults (no OMP_NUM_THREADS or
cv2.setNumThreads): this is the pipeline as a user would set it up, not a
tuned one.

Output: with --out, one JSON line per file, {"file": NAME, "scores":
{LABEL: score}} or {"file": NAME, "error": "..."}; on stdout one JSON summary
line {"files", "scored", "failed", "workers", "threads", "batch", "elapsed_s"}
(elapsed_s from the start of this script's imports). A file that fails is
reported and the others are still scored; the exit status is then 1.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

# pydicom_decode pins OMP / OpenBLAS / OpenJPEG ... thread counts to 1 on
# import, for its own single-thread timings. This pipeline runs with the
# libraries' defaults, so put the environment back as it was.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "OPJ_NUM_THREADS")
_saved_env = {k: os.environ.get(k) for k in _THREAD_VARS}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pydicom_decode import pipeline as decode_to_unit  # noqa: E402

for _k, _v in _saved_env.items():
    if _v is None:
        os.environ.pop(_k, None)
    else:
        os.environ[_k] = _v

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "cxr-reference-v1.onnx"

INTERPOLATION = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


class ModelSpec:
    """What the manifest (NAME.toml beside NAME.onnx) says about the model's
    input and output."""

    def __init__(self, model: Path):
        manifest = tomllib.loads(model.with_suffix(".toml").read_text())
        inp, out = manifest["input"], manifest["output"]
        self.input_tensor: str = inp["tensor"]
        self.width, self.height = int(inp["width"]), int(inp["height"])
        self.channels = int(inp.get("channels", 1))
        self.layout: str = inp.get("layout", "NCHW").upper()
        if inp.get("resize", "letterbox") != "letterbox":
            raise SystemExit(f"{model}: resize {inp['resize']!r}: this pipeline only letterboxes")
        self.interpolation = INTERPOLATION[inp.get("interpolation", "area")]
        norm = inp.get("normalization", {"kind": "zero_one"})
        self.norm = norm if isinstance(norm, dict) else {"kind": norm}
        self.output_tensor: str = out["tensor"]
        self.activation: str = out.get("activation", "none")
        self.labels: list[str] = list(out["labels"])

    def letterbox(self, img: np.ndarray) -> np.ndarray:
        """[0, 1] grey image -> [height, width] float32, aspect kept, centred
        on black."""
        h, w = img.shape
        scale = min(self.width / w, self.height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(img, (nw, nh), interpolation=self.interpolation)
        out = np.zeros((self.height, self.width), np.float32)
        y, x = (self.height - nh) // 2, (self.width - nw) // 2
        out[y:y + nh, x:x + nw] = small
        return out

    def tensor(self, img: np.ndarray) -> np.ndarray:
        """Letterboxed image -> one model input [C, H, W] (or [H, W, C])."""
        x = np.repeat(img[None], self.channels, axis=0)
        kind = self.norm["kind"]
        if kind == "minus_one_one":
            x = x * 2.0 - 1.0
        elif kind == "xrv":
            x = x * 2048.0 - 1024.0
        elif kind == "mean_std":
            mean = np.asarray(self.norm["mean"], np.float32).reshape(-1, 1, 1)
            std = np.asarray(self.norm["std"], np.float32).reshape(-1, 1, 1)
            x = (x - mean) / std
        elif kind != "zero_one":
            raise ValueError(f"normalization {kind!r}")
        if self.layout == "NHWC":
            x = x.transpose(1, 2, 0)
        return x.astype(np.float32)

    def activate(self, scores: np.ndarray) -> np.ndarray:
        if self.activation == "sigmoid":
            return 1.0 / (1.0 + np.exp(-scores))
        if self.activation == "softmax":
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return scores


# Per worker process: the model, loaded once by the pool's initializer.
_SPEC: ModelSpec | None = None
_SESSION: ort.InferenceSession | None = None


def load_model(model: str, threads: int) -> None:
    global _SPEC, _SESSION
    _SPEC = ModelSpec(Path(model))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    _SESSION = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def score_batch(paths: list[str]) -> list[dict]:
    """Decode, preprocess and score one batch of files (in a worker)."""
    assert _SPEC is not None and _SESSION is not None
    results: list[dict] = []
    inputs, names = [], []
    for p in paths:
        name = Path(p).name
        try:
            _, _, _, img = decode_to_unit(Path(p))
            if img.ndim == 3:  # multi-frame: the first frame
                img = img[0]
            inputs.append(_SPEC.tensor(_SPEC.letterbox(img)))
            names.append(name)
        except Exception as exc:  # report the file, score the others
            results.append({"file": name, "error": f"{type(exc).__name__}: {exc}"})
    if inputs:
        outputs = _SESSION.run(None, {_SPEC.input_tensor: np.stack(inputs)})
        index = [o.name for o in _SESSION.get_outputs()].index(_SPEC.output_tensor)
        scores = _SPEC.activate(outputs[index])
        for name, row in zip(names, scores):
            results.append({"file": name, "scores": dict(zip(_SPEC.labels, map(float, row)))})
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--out", type=Path, help="scores, one JSON line per file")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="onnxruntime intra-op threads per worker")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    files = sorted(str(p) for p in args.folder.iterdir() if p.suffix.lower() == ".dcm")
    batches = [files[i:i + args.batch] for i in range(0, len(files), args.batch)]
    scored = failed = 0
    out = open(args.out, "w") if args.out else None
    with ProcessPoolExecutor(max_workers=args.workers, initializer=load_model,
                             initargs=(args.model, args.threads)) as pool:
        for results in pool.map(score_batch, batches):
            for r in results:
                failed += "error" in r
                scored += "scores" in r
                if "error" in r:
                    print(f"python_pipeline: {r['file']}: {r['error']}", file=sys.stderr)
                if out:
                    out.write(json.dumps(r) + "\n")
    if out:
        out.close()
    print(json.dumps({"files": len(files), "scored": scored, "failed": failed,
                      "workers": args.workers, "threads": args.threads, "batch": args.batch,
                      "elapsed_s": round(time.perf_counter() - _T0, 3)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
