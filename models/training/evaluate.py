"""Evaluates the exported reference model with ONNX Runtime: operating points
on a validation set at synth's default nodule contrast, then the held-out
sets (seeds never used in training), per nodule contrast, film size and
nodule diameter. Writes out/reference-metrics.json.

    .venv-train/bin/python models/training/evaluate.py [--model PATH] [--out NAME]

Operating points, on the sigmoid probability, chosen on validation:
  screening         the highest threshold keeping sensitivity >= 95 % (a
                    triage test must miss little; WHO's target product
                    profile for TB triage asks >= 90 %), unless that leaves
                    specificity below 70 % (the same profile's floor: below
                    it nearly every film is flagged and the worklist no
                    longer sorts anything); then the lowest threshold with
                    specificity >= 70 %, and the card says what sensitivity
                    that keeps;
  high_specificity  the lowest threshold reaching specificity >= 99.5 %, and
                    never below screening (CRITICAL on the worklist).
"""
import argparse
import json

import numpy as np
import onnxruntime as ort

from common import DATA, FINDINGS, OUT, ROOT, auc, load_set, peak_hits

# Held-out sets (make_data.sh): name, nodule contrast, film size.
HELDOUT = [
    ("heldout-a", 3, "small"), ("heldout-b", 3, "small"), ("heldout-c", 3, "small"),
    ("heldout-d", 1, "small"), ("heldout-e", 2, "small"),
    ("heldout-f", 1, "full"), ("heldout-g", 3, "full"),
]
SIZE_NAMES = {"small": "448–608 px a side", "full": "synth's default: 35–43 cm at 0.10–0.20 mm, up to 3000 px"}
DIAMETERS = [(5, 10), (10, 20), (20, 31)]


def run(sess, name):
    images, rows, labels, boxes, extents = load_set(name)
    scores, maps = [], []
    for i in range(0, len(rows), 64):
        x = np.asarray(images[rows[i:i + 64]], np.float32) * 2 - 1
        s, m = sess.run(["scores", "heatmaps"], {"image": x})
        scores.append(1 / (1 + np.exp(-s)))
        maps.append(m)
    # The largest malignant-looking nodule of each image (mm; 0: none).
    truth = {}
    with open(DATA / name / "ground_truth.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            truth[rec["file"]] = max([g["nodule"]["diameter_mm"] for g in rec["findings"]
                                      if g["type"] == "nodule" and g["nodule"]["malignant_looking"]] or [0.0])
    diam = []
    with open(DATA / f"{name}.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            if rec["index"] is not None:
                diam.append(truth[rec["file"].rsplit("/", 1)[-1]])
    return np.concatenate(scores), np.concatenate(maps), labels, boxes, extents, np.asarray(diam)


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


def auc_ci(s, y, rng, n=1000):
    """ROC AUC with a 95 % percentile bootstrap interval (positives and
    negatives resampled separately)."""
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan"), float("nan")
    boot = []
    for _ in range(n):
        p = pos[rng.integers(0, len(pos), len(pos))]
        q = neg[rng.integers(0, len(neg), len(neg))]
        boot.append(auc(np.concatenate([p, q]), np.r_[np.ones(len(p)), np.zeros(len(q))]))
    return auc(s, y), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def join(parts):
    s = np.concatenate([p[0] for p in parts])
    m = np.concatenate([p[1] for p in parts])
    y = np.concatenate([p[2] for p in parts])
    b = [x for p in parts for x in p[3]]
    e = np.concatenate([p[4] for p in parts])
    d = np.concatenate([p[5] for p in parts])
    return s, m, y, b, e, d


def summary(parts, rng):
    s, m, y, b, e, d = join(parts)
    out = {"images": int(len(y))}
    for k, name in enumerate(FINDINGS):
        a, lo, hi = auc_ci(s[:, k], y[:, k], rng)
        hit, n = peak_hits(m, b, e, k)
        out[name] = {"auc": round(a, 4), "auc_ci95": [round(lo, 4), round(hi, 4)], "positives": int(y[:, k].sum()),
                     "peak_in_box": round(hit, 4), "peak_in_box_images": n}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT.parent / "cxr-reference-v1.onnx"))
    ap.add_argument("--val", default="val-d", help="validation set choosing the operating points")
    ap.add_argument("--out", default="reference-metrics.json", help="file in out/")
    args = ap.parse_args()
    rng = np.random.default_rng(20261206)
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    vs, _, vy, *_ = run(sess, args.val)
    held = {name: run(sess, name) for name, _, _ in HELDOUT}
    default = [held[n] for n, c, _ in HELDOUT if c == 1]  # synth's default contrast
    hs, hm, hy, hb, he, hd = join(default)
    report = {"validation_set": args.val, "validation_images": len(vy), "heldout_images": len(hy),
              "heldout_sets": "nodule contrast 1 (synth's default): " + ", ".join(n for n, c, _ in HELDOUT if c == 1),
              "findings": {}, "by_contrast": {}, "by_size": {}, "by_set": {}, "nodule_by_diameter": {}}
    for k, name in enumerate(FINDINGS):
        screening = threshold_for_sensitivity(vs[:, k], vy[:, k], 0.95)
        rule = "sensitivity >= 95 %"
        if rates(vs[:, k], vy[:, k], screening)[1] < 0.70:
            screening = threshold_for_specificity(vs[:, k], vy[:, k], 0.70)
            rule = "specificity >= 70 % (95 % sensitivity would leave less)"
        high = max(threshold_for_specificity(vs[:, k], vy[:, k], 0.995), screening)
        ops = {"screening": round(screening, 4), "high_specificity": round(high, 4)}
        hit, n = peak_hits(hm, hb, he, k)
        a, lo, hi = auc_ci(hs[:, k], hy[:, k], rng)
        entry = {
            "heldout_auc": round(a, 4),
            "heldout_auc_ci95": [round(lo, 4), round(hi, 4)],
            "validation_auc": round(auc(vs[:, k], vy[:, k]), 4),
            "heldout_positives": int(hy[:, k].sum()),
            "heldout_peak_in_box": round(hit, 4),
            "heldout_peak_in_box_images": n,
            "operating_points": {},
            "screening_rule": rule,
        }
        for op, t in ops.items():
            sens, spec = rates(hs[:, k], hy[:, k], t)
            entry["operating_points"][op] = {"threshold": t, "heldout_sensitivity": round(sens, 4),
                                             "heldout_specificity": round(spec, 4)}
        report["findings"][name] = entry
    for c in sorted({c for _, c, _ in HELDOUT}):
        names = [n for n, cc, _ in HELDOUT if cc == c]
        report["by_contrast"][str(c)] = {"sets": names, **summary([held[n] for n in names], rng)}
        # Nodule AUC per diameter of the largest malignant-looking nodule:
        # positives of that size against every negative at this contrast.
        s, _, y, _, _, d = join([held[n] for n in names])
        per = {}
        for lo_mm, hi_mm in DIAMETERS:
            keep = (y[:, 1] == 0) | ((d >= lo_mm) & (d < hi_mm))
            a, lo, hi = auc_ci(s[keep, 1], y[keep, 1], rng)
            per[f"{lo_mm}-{min(hi_mm, 30)} mm"] = {"auc": round(a, 4), "auc_ci95": [round(lo, 4), round(hi, 4)],
                                                   "positives": int(y[keep, 1].sum())}
        report["nodule_by_diameter"][str(c)] = per
    for size in ("small", "full"):
        for c in sorted({c for _, c, z in HELDOUT if z == size}):
            names = [n for n, cc, z in HELDOUT if z == size and cc == c]
            report["by_size"][f"{size}, contrast {c}"] = {"size": SIZE_NAMES[size], "sets": names,
                                                          **summary([held[n] for n in names], rng)}
    for name, c, size in HELDOUT:
        report["by_set"][name] = {"contrast": c, "size": size, **summary([held[name]], rng)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("findings", "by_contrast", "by_size", "nodule_by_diameter")}, indent=1))


if __name__ == "__main__":
    main()
