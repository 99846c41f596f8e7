"""Evaluates the exported reference model with ONNX Runtime on the
validation set (to choose operating points) and on the held-out sets
(different seeds, three image shapes) to report them. Writes
out/reference-metrics.json.

    .venv-train/bin/python models/training/evaluate.py

Operating points, on the sigmoid probability, chosen on validation:
  screening         the highest threshold keeping sensitivity >= 95 % (a
                    triage test must miss little; WHO's target product
                    profile for TB triage asks >= 90 %);
  high_specificity  the lowest threshold reaching specificity >= 99.5 %, and
                    never below screening (CRITICAL on the worklist).
"""
import json

import numpy as np
import onnxruntime as ort

from common import FINDINGS, OUT, ROOT, auc, load_set, peak_hits


def run(sess, name):
    images, rows, labels, boxes, extents = load_set(name)
    scores, maps = [], []
    for i in range(0, len(rows), 64):
        x = np.asarray(images[rows[i:i + 64]], np.float32) * 2 - 1
        s, m = sess.run(["scores", "heatmaps"], {"image": x})
        scores.append(1 / (1 + np.exp(-s)))
        maps.append(m)
    return np.concatenate(scores), np.concatenate(maps), labels, boxes, extents


def threshold_for_sensitivity(s, y, target):
    pos = np.sort(s[y == 1])
    k = int(np.floor((1 - target) * len(pos)))  # may miss k positives
    return float(pos[k])


def threshold_for_specificity(s, y, target):
    neg = np.sort(s[y == 0])
    k = int(np.ceil(target * len(neg)))
    return float(neg[min(k, len(neg) - 1)] + 1e-6)


def rates(s, y, t):
    p = s >= t
    sens = float((p & (y == 1)).sum() / max((y == 1).sum(), 1))
    spec = float((~p & (y == 0)).sum() / max((y == 0).sum(), 1))
    return sens, spec


def main():
    sess = ort.InferenceSession(str(ROOT.parent / "cxr-reference-v1.onnx"), providers=["CPUExecutionProvider"])
    vs, _, vy, _, _ = run(sess, "val")
    held = [run(sess, n) for n in ("heldout-a", "heldout-b", "heldout-c")]
    hs = np.concatenate([h[0] for h in held])
    hm = np.concatenate([h[1] for h in held])
    hy = np.concatenate([h[2] for h in held])
    hb = [b for h in held for b in h[3]]
    he = np.concatenate([h[4] for h in held])
    report = {"validation_images": len(vy), "heldout_images": len(hy), "findings": {}}
    for k, name in enumerate(FINDINGS):
        screening = threshold_for_sensitivity(vs[:, k], vy[:, k], 0.95)
        high = max(threshold_for_specificity(vs[:, k], vy[:, k], 0.995), screening)
        ops = {"screening": round(screening, 4), "high_specificity": round(high, 4)}
        hit, n = peak_hits(hm, hb, he, k)
        entry = {
            "heldout_auc": round(auc(hs[:, k], hy[:, k]), 4),
            "validation_auc": round(auc(vs[:, k], vy[:, k]), 4),
            "heldout_positives": int(hy[:, k].sum()),
            "heldout_peak_in_box": round(hit, 4),
            "heldout_peak_in_box_images": n,
            "operating_points": {},
        }
        for op, t in ops.items():
            sens, spec = rates(hs[:, k], hy[:, k], t)
            entry["operating_points"][op] = {"threshold": t, "heldout_sensitivity": round(sens, 4),
                                             "heldout_specificity": round(spec, 4)}
        report["findings"][name] = entry
    (OUT / "reference-metrics.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
