#!/usr/bin/env python3
"""A cxr-triage client in Python: sends DICOM files to the service and prints
what came back, or prints the reading worklist.

    python examples/python/triage_client.py FILE.dcm [FILE.dcm ...]
    python examples/python/triage_client.py --worklist
    python examples/python/triage_client.py --server host:50051 --ca ca.pem \
        --cert client.pem --key client.key FILE.dcm

Needs `pip install -r examples/python/requirements.txt` (grpcio and
grpcio-tools). The Python stubs are generated from `proto/` into
`examples/python/generated/` on first use (and again when the .proto is
newer), so the client always matches the API it ships with.

Files up to 3 MiB go in one `Analyze` message; larger ones (a chest CR is
often 10-30 MB) through `AnalyzeStream` in 1 MiB chunks. A refused call
(RESOURCE_EXHAUSTED: the service is full) is retried after the service's
`retry-after-ms` hint. Exit status: 0 when every file was answered, 1
otherwise.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
PROTO = PROTO_ROOT / "cxr_triage" / "v1" / "triage.proto"
GENERATED = HERE / "generated"
CHUNK = 1 << 20
UNARY_MAX = 3 << 20


def stubs():
    """Imports the generated modules, generating them first if needed."""
    target = GENERATED / "cxr_triage" / "v1" / "triage_pb2_grpc.py"
    if not target.exists() or target.stat().st_mtime < PROTO.stat().st_mtime:
        import grpc_tools  # grpcio-tools
        from grpc_tools import protoc

        GENERATED.mkdir(parents=True, exist_ok=True)
        well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
        rc = protoc.main([
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={GENERATED}",
            f"--grpc_python_out={GENERATED}",
            str(PROTO),
        ])
        if rc != 0:
            sys.exit(f"generating the Python stubs from {PROTO} failed (protoc exit {rc})")
    sys.path.insert(0, str(GENERATED))
    from cxr_triage.v1 import triage_pb2, triage_pb2_grpc  # noqa: E402

    return triage_pb2, triage_pb2_grpc


def channel(args):
    import grpc

    options = [
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20),
    ]
    if args.ca:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(args.ca).read_bytes(),
            private_key=Path(args.key).read_bytes() if args.key else None,
            certificate_chain=Path(args.cert).read_bytes() if args.cert else None,
        )
        if args.server_name:
            options.append(("grpc.ssl_target_name_override", args.server_name))
        return grpc.secure_channel(args.server, creds, options=options)
    return grpc.insecure_channel(args.server, options=options)


def retry_after_ms(error):
    for key, value in error.trailing_metadata() or ():
        if key == "retry-after-ms":
            try:
                return int(value)
            except ValueError:
                pass
    return 500


def analyze(client, pb, path, timeout, attempts=20):
    """One file: Analyze or AnalyzeStream, retrying while the service is full."""
    import grpc

    data = Path(path).read_bytes()
    options = pb.AnalyzeOptions(include_heatmaps=False)
    for attempt in range(attempts):
        try:
            if len(data) <= UNARY_MAX:
                return client.Analyze(pb.AnalyzeRequest(dicom=data, options=options), timeout=timeout)
            chunks = (
                pb.AnalyzeChunk(data=data[i:i + CHUNK], options=options if i == 0 else None)
                for i in range(0, len(data), CHUNK)
            )
            return client.AnalyzeStream(chunks, timeout=timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and attempt + 1 < attempts:
                time.sleep(retry_after_ms(e) / 1000)
                continue
            raise
    raise RuntimeError("unreachable")


def summary(pb, path, r):
    """The response as a JSON-ready dict (what a script would keep)."""
    return {
        "file": str(path),
        "study_instance_uid": r.identity.study_instance_uid,
        "sop_instance_uid": r.identity.sop_instance_uid,
        "analyzable": r.analyzable,
        "reason": r.reason.code if r.HasField("reason") else "",
        "priority": pb.Priority.Name(r.image_priority.priority),
        "study_priority": pb.Priority.Name(r.study_priority.priority),
        "reasons": [x.text for x in r.image_priority.reasons],
        "findings": [
            {
                "finding": pb.FindingKind.Name(f.kind),
                "score": round(f.score, 4),
                "positive": {op.name: op.positive for op in f.operating_points},
                "regions": len(f.regions),
            }
            for f in r.findings
        ],
        "models": [f"{m.model_id} {m.model_version} ({m.execution_provider})" for m in r.provenance],
        "total_ms": round(r.timings.total_ms, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="DICOM files to analyse")
    ap.add_argument("--server", default=os.environ.get("CXR_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--worklist", action="store_true", help="print the open worklist instead")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--timeout", type=float, default=120.0, help="per call, seconds")
    ap.add_argument("--ca", help="CA certificate (PEM) to trust: use TLS")
    ap.add_argument("--cert", help="client certificate (PEM), for mutual TLS")
    ap.add_argument("--key", help="client private key (PEM), for mutual TLS")
    ap.add_argument("--server-name", help="TLS name to expect when it differs from --server's host")
    args = ap.parse_args()
    if not args.files and not args.worklist:
        ap.error("give DICOM files, or --worklist")

    import grpc

    pb, rpc = stubs()
    client = rpc.TriageStub(channel(args))
    failed = 0
    for path in args.files:
        try:
            r = analyze(client, pb, path, args.timeout)
        except (grpc.RpcError, OSError) as e:
            detail = f"{e.code().name}: {e.details()}" if isinstance(e, grpc.RpcError) else str(e)
            print(f"{path}: FAILED {detail}", file=sys.stderr)
            failed += 1
            continue
        s = summary(pb, path, r)
        if args.json:
            print(json.dumps(s), flush=True)
        else:
            verdict = "analyzed" if s["analyzable"] else f"NOT ANALYZED ({s['reason']})"
            print(f"{path}: {s['priority']} {verdict}; study {s['study_instance_uid']}")
            for f in s["findings"]:
                flags = ", ".join(f"{k}={'+' if v else '-'}" for k, v in f["positive"].items())
                print(f"  {f['finding']:<18} {f['score']:.3f}  {flags}")
    if args.worklist:
        page = client.ListWorklist(pb.ListWorklistRequest(page_size=100), timeout=args.timeout)
        for s in page.studies:
            row = {
                "study_instance_uid": s.study_instance_uid,
                "priority": pb.Priority.Name(s.priority.priority),
                "status": pb.StudyStatus.Name(s.status),
                "images": s.image_count,
                "top_score": round(s.top_score, 4),
            }
            print(json.dumps(row) if args.json else
                  f"{row['priority']:<14} {row['status']:<10} {row['top_score']:.3f} "
                  f"{row['images']} image(s)  {row['study_instance_uid']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
