#!/usr/bin/env python3
"""Side by side: scoring a folder of chest films with cxr-triage vs with the
Python pipeline a site without cxr-triage would write, both on all cores.

Usage:
    python benches/baseline/pipeline_compare.py [--sets synthetic,rg1]
        [--count 200] [--rg1-count 168] [--repeat 3] [--work DIR]
        [--python-only | --ours-only] [--json-out results.json]
        [--binary target/release/cxr-triage] [--synth target/release/cxr-synth]

Both sides get the same directory of DICOM files and the same model
(models/cxr-reference-v1.onnx and its manifest), run as a fresh process, and
are timed from process start to exit (wall clock, time.perf_counter around
the child process): interpreter or binary start-up, imports, worker pool
start-up and model loading are all included. Images/s = files / wall.

- Python (benches/baseline/python_pipeline.py, the obvious pipeline, set up
  as its user would: all cores, library defaults otherwise):
  a concurrent.futures.ProcessPoolExecutor with os.cpu_count() workers; files
  in batches of 8, one task per batch; each worker loads an
  onnxruntime.InferenceSession (CPUExecutionProvider, intra-op threads =
  os.cpu_count()) once, and per file runs pydicom.dcmread + pixel_array
  (pylibjpeg / openjpeg / libjpeg / rle plugins), modality LUT (Rescale
  Slope / Intercept), VOI window, MONOCHROME1 inversion
  (benches/baseline/pydicom_decode.py), a letterbox to the manifest's
  256 x 256 with cv2.resize(..., interpolation=cv2.INTER_AREA) centred on
  black, the manifest's normalisation (x * 2 - 1); then session.run on the
  batch and a sigmoid on the scores. Scores are written to a JSON Lines file.
- ours: `cxr-triage score DIR --out RESULTS.jsonl --models models
  --provider cpu --quiet`, as a site runs a campaign: its defaults (one
  decode/preprocess worker per core, batched inference on the engine's
  thread), and per image findings, operating points, priority, heatmap
  peaks and regions, one JSON line per image.

CPU utilisation = (user + system CPU seconds of the child process and every
process it waited for, from resource.getrusage(RUSAGE_CHILDREN)) / (wall x
os.cpu_count()); 100 % means every core busy for the whole run.

File sets (built once into --work, default benches/baseline/.cache, and
reused):
1. "synthetic full-size": --count (200) films from `cxr-synth` (seed 1,
   frontal, mixed CR/DX, Explicit VR Little Endian, --synth-size 3000x2900,
   --synth-bits 16: uncompressed, about 17 MB each); cxr-synth's ground-truth
   sidecars are moved to a truth/ subfolder, so the folder holds only films.
2. "RG1 mix": the NEMA WG04 chest CR RG1 (1841 x 1955, 15 bits) in 14
   transfer syntaxes from test-images/generated (`make fixtures`): lossless
   (Explicit and Implicit VR LE, Deflated, RLE, JPEG lossless SV1 and P14,
   JPEG-LS, JPEG 2000, HTJ2K) and lossy (JPEG-LS near-lossless, JPEG 2000,
   HTJ2K, JPEG extended 12-bit, JPEG baseline 8-bit), copied round-robin under
   distinct names to --rg1-count (168) files. Fixtures that are missing
   (HTJ2K needs openjph-tools) are left out, with a note.

Before the first round every file is read once (untimed), so both sides find
the files in the page cache. Then --repeat rounds per set, the two sides
alternating (Python first in even rounds, ours first in odd ones); the table
shows the median images/s and CPU utilisation of each side and the ratio
ours / Python. As a check that both sides did the same work, the largest
difference between their scores per finding (Python's sigmoid vs ours'
raw_score, matched by file name) is printed too. It catches gross errors
only: the letterboxes differ by under a pixel (Python centres at a whole
pixel offset, ours at the exact sub-pixel one) and cxr-reference-v1 is
sensitive to where the film's edge falls (RG1: 0.82 vs 0.68 on tuberculosis;
the same tensor gives the same score on both). The release binaries come from
`make build`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODELS = ROOT / "models"
MODEL = MODELS / "cxr-reference-v1.onnx"
FIXTURES = ROOT / "test-images" / "generated"
PYTHON_PIPELINE = HERE / "python_pipeline.py"
BATCH = 8

# The RG1 chest CR in each transfer syntax the fixtures hold it in.
RG1_MIX = [
    # lossless
    "RG1_UNCR.dcm",            # Explicit VR Little Endian
    "RG1_IMPLICIT.dcm",        # Implicit VR Little Endian
    "RG1_DEFL.dcm",            # Deflated Explicit VR Little Endian
    "RG1_RLE.dcm",             # RLE Lossless
    "RG1_JPLL_SV1.dcm",        # JPEG Lossless, first-order prediction (SV1)
    "RG1_JPLL_P14_SV2.dcm",    # JPEG Lossless, process 14, predictor 2
    "RG1_JLSL.dcm",            # JPEG-LS lossless
    "RG1_J2KR.dcm",            # JPEG 2000 lossless
    "RG1_HTJ2KL.dcm",          # HTJ2K lossless
    # lossy
    "RG1_JLSN.dcm",            # JPEG-LS near-lossless (NEAR=2)
    "RG1_J2KI.dcm",            # JPEG 2000
    "RG1_HTJ2K.dcm",           # HTJ2K
    "RG1_12BIT_JPEXT.dcm",     # JPEG extended, 12-bit
    "RG1_8BIT_JPBASE.dcm",     # JPEG baseline, 8-bit
]


@dataclass
class Run:
    """One timed run of one side over one set."""
    wall_s: float
    cpu_s: float
    images_per_s: float
    cpu_util: float
    not_scored: int


@dataclass
class Side:
    runs: list[Run] = field(default_factory=list)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # last run's

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)


class Missing(Exception):
    """Something the benchmark needs is not there (binary, fixtures)."""


# ---------------------------------------------------------------- machine

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version_of(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine_facts(binary: Path) -> dict:
    facts = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {p: version_of(p) for p in (
            "numpy", "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg",
            "pylibjpeg-rle", "pyjpegls", "opencv-python-headless", "onnxruntime")
            if version_of(p)},
    }
    if binary.exists():
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
        facts["cxr_triage"] = out.stdout.strip()
    return facts


# ---------------------------------------------------------------- file sets

def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise Missing(f"{what} not found at {path}: build it with `make build` "
                      f"(cargo build --release -p cxr-triage -p cxr-synth)")
    return path


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".dcm")


def synthetic_set(work: Path, synth: Path, count: int, size: str, bits: str, seed: int) -> Path:
    """--count cxr-synth films in their own folder, generated once."""
    folder = work / f"synthetic-{size}-{bits}bit-explicit-le-seed{seed}-n{count}"
    if folder.is_dir() and len(dicom_files(folder)) == count:
        return folder
    require(synth, "cxr-synth")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"generating {count} synthetic films into {folder} ...", flush=True)
    subprocess.run([str(synth), "--out", str(tmp), "--count", str(count), "--seed", str(seed),
                    "--size", size, "--bits", bits, "--transfer-syntax", "explicit-le"],
                   check=True)
    (tmp / "truth").mkdir()
    for sidecar in ("ground_truth.jsonl", "labels.csv"):
        if (tmp / sidecar).exists():
            (tmp / sidecar).rename(tmp / "truth" / sidecar)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def rg1_set(work: Path, count: int) -> Path:
    """RG1 in each transfer syntax present, copied round-robin to `count`
    files named NNN_SOURCE.dcm; rebuilt when the sources change."""
    sources = [FIXTURES / n for n in RG1_MIX if (FIXTURES / n).exists()]
    if not sources:
        raise Missing(f"no RG1 fixtures in {FIXTURES}: make them with `make fixtures`")
    absent = [n for n in RG1_MIX if not (FIXTURES / n).exists()]
    if absent:
        print(f"note: RG1 mix without {', '.join(absent)} (not in {FIXTURES})")
    folder = work / f"rg1-mix-n{count}"
    stamp = json.dumps([[s.name, s.stat().st_size, s.stat().st_mtime_ns] for s in sources])
    if folder.is_dir() and (folder / ".sources.json").exists() \
            and (folder / ".sources.json").read_text() == stamp:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        src = sources[i % len(sources)]
        shutil.copyfile(src, folder / f"{i:03d}_{src.name}")
    (folder / ".sources.json").write_text(stamp)
    return folder


def describe(folder: Path) -> dict:
    files = dicom_files(folder)
    return {"folder": str(folder), "files": len(files),
            "mbytes": round(sum(f.stat().st_size for f in files) / 1e6, 1)}


def warm_cache(folder: Path) -> None:
    for f in dicom_files(folder):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


# ---------------------------------------------------------------- the two sides

def timed(cmd: list[str], what: str) -> tuple[float, float, subprocess.CompletedProcess]:
    """Runs cmd to completion: (wall s, user + sys CPU s of it and its
    descendants, the completed process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):  # 1: some files failed, reported below
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"{what} exited with status {proc.returncode}: {' '.join(cmd)}")
    return wall, cpu, proc


def make_run(n: int, wall: float, cpu: float, not_scored: int) -> Run:
    return Run(wall_s=round(wall, 3), cpu_s=round(cpu, 3), images_per_s=round(n / wall, 3),
               cpu_util=round(cpu / (wall * (os.cpu_count() or 1)), 3), not_scored=not_scored)


def run_python(folder: Path, n: int, tmp: Path) -> tuple[Run, dict]:
    out = tmp / "python-scores.jsonl"
    wall, cpu, proc = timed([sys.executable, str(PYTHON_PIPELINE), str(folder), "--model", str(MODEL),
                             "--out", str(out), "--batch", str(BATCH)], "python_pipeline.py")
    scores, failed = {}, 0
    for line in out.read_text().splitlines():
        r = json.loads(line)
        if "scores" in r:
            scores[r["file"]] = r["scores"]
        else:
            failed += 1
    return make_run(n, wall, cpu, failed), scores


def run_ours(binary: Path, folder: Path, n: int, tmp: Path) -> tuple[Run, dict]:
    out = tmp / "ours-results.jsonl"
    wall, cpu, proc = timed([str(binary), "score", str(folder), "--out", str(out),
                             "--models", str(MODELS), "--provider", "cpu", "--quiet"],
                            "cxr-triage score")
    scores = {}
    for line in out.read_text().splitlines():
        r = json.loads(line)
        if r.get("analyzable"):
            scores[Path(r["file"]).name] = r["raw_scores"]
    failed = n - len(scores)
    if failed:
        print(f"note: ours scored {len(scores)} of {n} files "
              f"(not analysable or failed; see `cxr-triage score {folder}`)")
    return make_run(n, wall, cpu, failed), scores


def score_agreement(py: dict, ours: dict) -> dict[str, float]:
    """Largest |Python - ours| per finding over the files both scored."""
    diff: dict[str, float] = {}
    for name in py.keys() & ours.keys():
        for label, s in py[name].items():
            if label in ours[name]:
                diff[label] = max(diff.get(label, 0.0), abs(s - ours[name][label]))
    return {k: round(v, 4) for k, v in sorted(diff.items())}


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="synthetic,rg1",
                    help="comma-separated: synthetic, rg1 (default both)")
    ap.add_argument("--count", type=int, default=200, help="synthetic films (default 200)")
    ap.add_argument("--synth-size", default="3000x2900", help="cxr-synth --size (default 3000x2900)")
    ap.add_argument("--synth-bits", default="16", help="cxr-synth --bits (default 16)")
    ap.add_argument("--synth-seed", type=int, default=1)
    ap.add_argument("--rg1-count", type=int, default=168, help="RG1 mix files (default 168)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per set (default 3)")
    ap.add_argument("--work", type=Path, default=HERE / ".cache",
                    help="where the file sets are built and kept (default benches/baseline/.cache)")
    ap.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "cxr-triage")
    ap.add_argument("--synth", type=Path, default=ROOT / "target" / "release" / "cxr-synth")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--python-only", action="store_true", help="time the Python side alone")
    only.add_argument("--ours-only", action="store_true", help="time cxr-triage alone")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    if min(args.repeat, args.count, args.rg1_count) < 1:
        ap.error("--repeat, --count and --rg1-count must be at least 1")
    sides = [s for s, skip in (("python", args.ours_only), ("ours", args.python_only)) if not skip]
    wanted = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(wanted) - {"synthetic", "rg1"}
    if unknown:
        ap.error(f"unknown set(s): {', '.join(sorted(unknown))}")
    try:
        if "ours" in sides:
            require(args.binary, "cxr-triage")
        args.work.mkdir(parents=True, exist_ok=True)
        sets: list[tuple[str, Path]] = []
        if "synthetic" in wanted:
            sets.append(("synthetic full-size", synthetic_set(
                args.work, args.synth, args.count, args.synth_size, args.synth_bits, args.synth_seed)))
        if "rg1" in wanted:
            sets.append(("RG1 mix", rg1_set(args.work, args.rg1_count)))
    except Missing as e:
        print(f"pipeline_compare: {e}", file=sys.stderr)
        return 2

    facts = machine_facts(args.binary)
    print(f"{facts['date']}  {facts['cpu_count']} cores  {facts['cpu_model']}  ({facts['machine']}, "
          f"Linux {facts['kernel']}, Python {facts['python']})")
    if "cxr_triage" in facts:
        print(facts["cxr_triage"])
    print("python: " + ", ".join(f"{k} {v}" for k, v in facts["packages"].items()))
    print(f"model: {MODEL.relative_to(ROOT)}; Python: {os.cpu_count()} worker processes x "
          f"{os.cpu_count()} onnxruntime threads, batch {BATCH}; ours: `cxr-triage score`, defaults")

    report = {"machine": facts, "repeat": args.repeat, "sets": []}
    for name, folder in sets:
        info = describe(folder)
        n = info["files"]
        print(f"\n{name}: {n} files, {info['mbytes']} MB, {folder}", flush=True)
        warm_cache(folder)
        results = {s: Side() for s in sides}
        for r in range(args.repeat):
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                with tempfile.TemporaryDirectory(prefix="cxr-compare-") as tmp:
                    if side == "python":
                        run, scores = run_python(folder, n, Path(tmp))
                    else:
                        run, scores = run_ours(args.binary, folder, n, Path(tmp))
                results[side].runs.append(run)
                results[side].scores = scores
                print(f"  round {r + 1} {side:<6} {run.images_per_s:8.2f} images/s  "
                      f"wall {run.wall_s:7.2f} s  CPU {run.cpu_util:6.1%}"
                      + (f"  ({run.not_scored} not scored)" if run.not_scored else ""), flush=True)
        entry = {"name": name, **info}
        for side, res in results.items():
            entry[side] = {"runs": [asdict(x) for x in res.runs],
                           "median_images_per_s": res.median("images_per_s"),
                           "median_wall_s": res.median("wall_s"),
                           "median_cpu_util": res.median("cpu_util")}
        if len(results) == 2:
            entry["ratio"] = round(entry["ours"]["median_images_per_s"]
                                   / entry["python"]["median_images_per_s"], 3)
            entry["max_score_difference"] = score_agreement(results["python"].scores,
                                                            results["ours"].scores)
        report["sets"].append(entry)

    print(f"\nmedians of {args.repeat} round(s), {os.cpu_count()} cores, CPU")
    header = f"{'set':<20} {'files':>5}  {'side':<6} {'images/s':>9} {'wall s':>8} {'CPU util':>8}"
    print(header + ("  ours/python" if len(sides) == 2 else ""))
    for e in report["sets"]:
        for i, side in enumerate(sides):
            s = e[side]
            line = (f"{e['name'] if i == 0 else '':<20} {e['files'] if i == 0 else '':>5}  {side:<6} "
                    f"{s['median_images_per_s']:>9.2f} {s['median_wall_s']:>8.2f} "
                    f"{s['median_cpu_util']:>8.1%}")
            if "ratio" in e and i == len(sides) - 1:
                line += f"  {e['ratio']:.2f}x"
            print(line)
    for e in report["sets"]:
        if e.get("max_score_difference"):
            diffs = ", ".join(f"{k} {v}" for k, v in e["max_score_difference"].items())
            print(f"{e['name']}: largest score difference python vs ours: {diffs}")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
