"""Reduced-resolution JPEG 2000 decoding against full decoding, on the same
films, through `cxr-triage score --db` (the one analysis path) twice: per-film
score changes, verdict and priority changes, and the shift of the heatmap
peak on films positive at the default operating point. The AUCs come from
`cxr-triage evaluate` on the two runs' JSONL (make bench-reduced runs both).

    python benches/baseline/reduced_accuracy.py OFF.sqlite AUTO.sqlite [--truth labels.csv] [--json OUT]

With --truth (as `cxr-synth` writes it), the peak shift is also reported on
the films that are positive in truth and flagged: where a heatmap has a
lesion to point at. On a flagged negative film the heatmap is nearly flat
and its peak can fall anywhere in either mode.
"""
import argparse
import csv
import json
import math
import sqlite3
import statistics


def load(path):
    out = {}
    for sop, result in sqlite3.connect(path).execute("SELECT sop_uid, result FROM images WHERE analyzable = 1"):
        r = json.loads(result)
        out[sop] = {f["finding"]: f for f in r["findings"]}
    return out


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))] if v else float("nan")


def shift_stats(prefix, shifts):
    """Median, 90th percentile and largest of peak shifts, keyed by `prefix`."""
    def stat(f):
        return round(f(shifts), 1) if shifts else None
    return {
        f"{prefix}median": stat(statistics.median),
        f"{prefix}p90": stat(lambda v: pct(v, 0.9)),
        f"{prefix}max": stat(max),
    }


def priorities(path):
    return dict(sqlite3.connect(path).execute("SELECT sop_uid, assessment FROM images"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("off")
    ap.add_argument("auto")
    ap.add_argument("--truth")
    ap.add_argument("--json")
    args = ap.parse_args()
    truth = {}
    if args.truth:
        for row in csv.DictReader(open(args.truth)):
            truth[row["sop_instance_uid"]] = row
    off, auto = load(args.off), load(args.auto)
    common = sorted(set(off) & set(auto))
    report = {"films": len(common), "findings": {}}
    for finding in sorted(next(iter(off.values()))):
        deltas, flips, shifts, true_shifts = [], 0, [], []
        for sop in common:
            a, b = off[sop][finding], auto[sop][finding]
            deltas.append(abs(a["score"] - b["score"]))
            flips += sum(x["positive"] != y["positive"]
                         for x, y in zip(a["operating_points"], b["operating_points"]))
            if a["positive"] and a.get("peak") and b.get("peak"):
                shift = math.hypot(a["peak"]["x"] - b["peak"]["x"], a["peak"]["y"] - b["peak"]["y"])
                shifts.append(shift)
                if truth.get(sop, {}).get(finding) == "1":
                    true_shifts.append(shift)
        report["findings"][finding] = {
            "score_delta_mean": round(statistics.fmean(deltas), 4),
            "score_delta_p99": round(pct(deltas, 0.99), 4),
            "score_delta_max": round(max(deltas), 4),
            "verdicts_changed": flips,
            "verdicts": len(common) * len(next(iter(off.values()))[finding]["operating_points"]),
            "positive_films": len(shifts),
            **shift_stats("peak_shift_px_", shifts),
        }
        if truth:
            report["findings"][finding].update({
                "true_positive_films": len(true_shifts),
                **shift_stats("true_positive_peak_shift_px_", true_shifts),
            })
    po, pa = priorities(args.off), priorities(args.auto)
    report["priority_changed"] = sum(1 for s in common if json.loads(po[s]).get("priority") != json.loads(pa[s]).get("priority"))
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        open(args.json, "w").write(text)


if __name__ == "__main__":
    main()
