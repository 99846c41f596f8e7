#!/usr/bin/env python3
"""MLLP receiver (test peer) for HL7 v2.5.1 ORU^R01 results from cxr-triage.

    .venv/bin/python tests/interop/mllp_receiver.py --port 0 --out /tmp/hl7.jsonl \
        [--control /tmp/hl7.mode] [--ack-mode AA] [--host 127.0.0.1] \
        [--tls-cert server.pem --tls-key server.key [--tls-client-ca ca.pem]]
    .venv/bin/python tests/interop/mllp_receiver.py --self-test

Built on python-hl7's asyncio MLLP server (hl7.mllp.start_hl7_server); every
message is validated with hl7apy (v2.5.1, VALIDATION_LEVEL.STRICT) plus the
checks hl7apy silently skips (segment order/unknown segments, `\\r`
separators, MSH-18 vs non-ASCII bytes, MSH-9/MSH-12). Prints `READY <port>`
once listening. Appends one JSON line per received message to --out *before*
the ACK is written (so a test may read it as soon as it has the ACK):
  seq conn peer ts control_id message_type version charset patient_name raw
  valid errors warnings mode ack_code ack
Connections are persistent: any number of messages per connection.
With --tls-cert/--tls-key it speaks MLLP over TLS (Python's ssl module);
with --tls-client-ca it also requires a client certificate signed by that CA
and records its subject's commonName as `tls_client`.

Acknowledgement mode (original mode; MSH-15/16 are not interpreted). The
first line of --control (re-read for every message; missing/empty file means
--ack-mode, default AA) is one of
  AA | AE | AR     reply with that MSA-1 (AE/AR carry MSA-3 text + ERR)
  AUTO             AA if valid, AR if MSH-9/MSH-12 unsupported, else AE
  DROP             record the message, close the connection, no ACK
  SLOW:secs[:M]    record, sleep secs, then reply as mode M (default AA)
  WRONGID          AA whose MSA-2 is not the message's control id
or a comma list (e.g. `DROP,AE,AA`): one entry per message, the last sticks;
the list restarts whenever the file's content changes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import hl7
import hl7.client
from hl7.mllp import InvalidBlockError, start_hl7_server
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hl7apy.validation import Validator

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"

# MSH-18 (HL7 table 0211) -> Python codec. Absent MSH-18 means 7-bit ASCII.
CHARSETS = {"": "ascii", "ASCII": "ascii", "UNICODE UTF-8": "utf-8", "8859/1": "latin-1"}

# v2.5.1 ORU_R01 abstract syntax over segment IDs (hl7apy does not enforce
# order and silently drops segments that fit nowhere, e.g. MSA or Z-segments).
ORU_R01_GRAMMAR = re.compile(
    r"^MSH (SFT )*("
    r"(PID (PD1 )?(NTE )*(NK1 )*(PV1 (PV2 )?)?)?"
    r"((ORC )?OBR (NTE )*(TQ1 (TQ2 )*)*(CTD )?(OBX (NTE )*)*(FT1 )*(CTI )*(SPM (OBX )*)*)+"
    r")+(DSC )?$"
)


# --------------------------------------------------------------------------
# Sample message (used by --self-test; also reproduced in NOTES.md)
# --------------------------------------------------------------------------
SAMPLE_CONTROL_ID = "CXR20240501103000001"  # MSH-10 is ST(20) in v2.5.1
SAMPLE_SEGMENTS = [
    "MSH|^~\\&|CXR-TRIAGE|RADIOLOGY|RIS|HOSPITAL|20240501103000+0700||ORU^R01^ORU_R01|"
    + SAMPLE_CONTROL_ID + "|P|2.5.1|||||VNM|UNICODE UTF-8",
    "PID|1||PID12345^^^HOSPITAL^MR||NGUYỄN^THỊ HOA||19800101|F",
    "PV1|1|O",
    "ORC|RE|ACC123456^RIS|ACC123456^CXR-TRIAGE",
    "OBR|1|ACC123456^RIS|ACC123456^CXR-TRIAGE|36643-5^XR Chest 2 Views^LN|||20240501101500+0700"
    "|||||||||||ACC123456||||20240501103000+0700||RAD|P",
    "NTE|1|L|Preliminary AI triage result from CXR-TRIAGE; requires radiologist review.",
    # finding 1 (OBX-4 sub-id groups finding / score / verdict)
    "OBX|1|CWE|59776-5^Procedure findings^LN|1|233604007^Pneumonia^SCT||||||P|||20240501101500+0700"
    "||||cxr-densenet121-1.4.2^CXR-TRIAGE",
    "OBX|2|NM|CXR-SCORE^AI probability^L|1|0.87|1^^UCUM||A|||P",
    "OBX|3|CWE|CXR-VERDICT^AI triage verdict^L|1|POS^Positive^L||||||P",
    # finding 2
    "OBX|4|CWE|59776-5^Procedure findings^LN|2|60046008^Pleural effusion^SCT||||||P",
    "OBX|5|NM|CXR-SCORE^AI probability^L|2|0.12|1^^UCUM||N|||P",
    "OBX|6|CWE|CXR-VERDICT^AI triage verdict^L|2|NEG^Negative^L||||||P",
    # model identity and disclaimer
    "OBX|7|ST|CXR-MODEL^AI model id and version^L||cxr-densenet121 1.4.2||||||P",
    "OBX|8|TX|CXR-DISCLAIMER^AI disclaimer^L||AI result — not for primary diagnosis||||||P",
    "NTE|1|L|Model output only; a radiologist must review before clinical use.",
]
SAMPLE_ORU = "\r".join(SAMPLE_SEGMENTS) + "\r"


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------
def msh_fields(text: str) -> list[str]:
    """MSH split on its field separator; index n-1 is MSH-n (MSH-1 is the separator)."""
    first = re.split(r"[\r\n]", text, maxsplit=1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        return []
    return first.split(first[3])  # [0]="MSH", [1]=MSH-2, [n-1]=MSH-n


def msh(fields: list[str], n: int) -> str:
    return fields[n - 1] if len(fields) >= n else ""


def hl7_escape(s: str) -> str:
    s = s.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    s = s.replace("&", "\\T\\").replace("~", "\\R\\")
    return re.sub(r"[\r\n]+", " ", s)


def hl7apy_check(text: str, structure: str | None = None) -> tuple[list[str], list[str], object]:
    """Strict parse + Validator.validate with a report file: all errors and warnings.

    Validator.validate() raises only the *first* error and never surfaces table
    or length warnings; the report file is the only place they all appear.
    """
    errors: list[str] = []
    warnings: list[str] = []
    try:
        m = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
    except Exception as e:  # parse-time strict checks: DTM/SI/NM syntax, max length, components
        return [f"hl7apy parse: {type(e).__name__}: {str(e)[:300]}"], warnings, None
    if structure and m.name != structure:
        errors.append(f"hl7apy: parsed as {m.name}, expected {structure}")
    fd, report = tempfile.mkstemp(prefix="hl7apy-", suffix=".txt")
    os.close(fd)
    try:
        try:
            Validator.validate(m, report_file=report)
        except Exception:
            pass
        with open(report, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line.startswith("Error: "):
                    errors.append("hl7apy: " + line[7:307])
                elif line.startswith("Warning: "):
                    warnings.append("hl7apy: " + line[9:309])
    finally:
        os.unlink(report)
    # Segments that fit nowhere in the structure vanish from the tree.
    raw_ids = [s[:3] for s in re.split(r"\r", text) if s.strip()]
    kept_ids = [s[:3] for s in m.to_er7().split("\r") if s]
    if sorted(raw_ids) != sorted(kept_ids):
        lost = list(raw_ids)
        for s in kept_ids:
            if s in lost:
                lost.remove(s)
        errors.append(f"hl7apy dropped segments it could not place: {lost}")
    return errors, warnings, m


def validate_oru(text: str, raw: bytes | None = None) -> dict:
    """Everything this peer checks on an inbound ORU^R01; 'valid' means no errors."""
    errors: list[str] = []
    warnings: list[str] = []
    if "\n" in text:
        errors.append("framing: segment separator must be \\r only (found \\n)")
    f = msh_fields(text)
    if not f:
        return {"valid": False, "errors": ["framing: message does not start with MSH"], "warnings": []}
    mtype, version, charset = msh(f, 9), msh(f, 12), msh(f, 18).split("~")[0]
    if mtype.split("^")[:2] != ["ORU", "R01"]:
        errors.append(f"MSH-9: expected ORU^R01^ORU_R01, got {mtype!r}")
    elif mtype != "ORU^R01^ORU_R01":
        warnings.append(f"MSH-9: {mtype!r}; v2.5.1 wants the structure too (ORU^R01^ORU_R01)")
    if version != "2.5.1":
        errors.append(f"MSH-12: expected 2.5.1, got {version!r}")
    non_ascii = any(ord(c) > 127 for c in text) or (raw is not None and any(b > 127 for b in raw))
    if non_ascii and charset != "UNICODE UTF-8":
        errors.append(f"MSH-18: non-ASCII content but MSH-18={charset!r} (want 'UNICODE UTF-8')")
    if not msh(f, 10):
        errors.append("MSH-10: message control id is empty")
    elif len(msh(f, 10)) > 20:  # hl7apy does not check this length
        warnings.append(f"MSH-10: {len(msh(f, 10))} chars; v2.5.1 allows 20")
    ids = " ".join(s[:3] for s in text.replace("\n", "\r").split("\r") if s.strip()) + " "
    if not ORU_R01_GRAMMAR.match(ids):
        errors.append(f"structure: segment sequence {ids.split()} is not a v2.5.1 ORU_R01")
    if "\n" not in text:  # hl7apy on \n-separated text only yields confusing noise
        e, w, _ = hl7apy_check(text, "ORU_R01")
        errors += e
        warnings += w
    return {"valid": not errors, "errors": errors, "warnings": list(dict.fromkeys(warnings))}


# --------------------------------------------------------------------------
# ACK
# --------------------------------------------------------------------------
ERR_CODES = {  # HL7 table 0357
    "101": "Required field missing", "102": "Data type error", "100": "Segment sequence error",
    "200": "Unsupported message type", "203": "Unsupported version id",
    "207": "Application internal error",
}


def build_ack(f: list[str], code: str, control_id: str, text: str = "", err: str = "207") -> str:
    now = dt.datetime.now().astimezone().strftime("%Y%m%d%H%M%S%z")
    trigger = (msh(f, 9).split("^") + ["", ""])[1] or "R01"
    segs = [
        "|".join([
            "MSH", "^~\\&", msh(f, 5), msh(f, 6), msh(f, 3), msh(f, 4), now, "",
            f"ACK^{trigger}^ACK", "ACK" + str(int(time.time() * 1000)),
            msh(f, 11) or "P", msh(f, 12) or "2.5.1", "", "", "", "", "", msh(f, 18),
        ]).rstrip("|"),
        "|".join(["MSA", code, control_id, hl7_escape(text)[:80]]).rstrip("|"),
    ]
    if code in ("AE", "AR"):
        segs.append(f"ERR|||{err}^{ERR_CODES.get(err, 'Error')}^HL70357|E||||{hl7_escape(text)[:250]}")
    return "\r".join(segs) + "\r"


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------
class Modes:
    """Current ack mode from --control, with comma-list sequencing."""

    def __init__(self, path: str | None, default: str):
        self.path, self.default = path, default
        self.content, self.index = None, 0

    def next(self) -> str:
        content = ""
        if self.path:
            try:
                with open(self.path, encoding="utf-8") as fh:
                    content = (fh.readline() or "").strip()
            except FileNotFoundError:
                pass
        if not content:
            return self.default
        if content != self.content:
            self.content, self.index = content, 0
        items = [x.strip() for x in content.split(",") if x.strip()]
        mode = items[min(self.index, len(items) - 1)]
        self.index += 1
        return mode


class Receiver:
    def __init__(self, out: str, modes: Modes):
        self.out, self.modes = out, modes
        self.seq = 0
        self.conns = 0

    def record(self, rec: dict) -> None:
        with open(self.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()

    def analyse(self, block: bytes) -> tuple[dict, list[str]]:
        rec: dict = {"ts": dt.datetime.now().astimezone().isoformat()}
        # MSH is ASCII by construction; find MSH-18 before decoding the body.
        head = block.split(CR, 1)[0].decode("ascii", "replace")
        f = msh_fields(head)
        charset = msh(f, 18).split("~")[0]  # first repetition = the message's charset
        codec = CHARSETS.get(charset)
        decode_err = None
        try:
            text = block.decode(codec or "utf-8")
        except UnicodeDecodeError as e:
            decode_err = f"charset: bytes are not valid {codec or 'utf-8'} (MSH-18={charset!r}): {e}"
            text = block.decode(codec or "utf-8", "replace")
            rec["raw_b64"] = base64.b64encode(block).decode()
        rec.update(control_id=msh(f, 10), message_type=msh(f, 9), version=msh(f, 12),
                   charset=charset, patient_name=None, raw=text)
        try:
            pid = hl7.parse(text.replace("\n", "\r")).segment("PID")
            rec["patient_name"] = str(pid(5))
        except Exception:
            pass
        v = validate_oru(text, block)
        if codec is None and charset:
            v["errors"].insert(0, f"MSH-18: unsupported character set {charset!r}")
        if decode_err:
            v["errors"].insert(0, decode_err)
        v["valid"] = not v["errors"]
        rec.update(v)
        return rec, f

    async def handle(self, reader, writer) -> None:
        self.conns += 1
        conn = self.conns
        peer = writer.get_extra_info("peername")
        peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        cert = writer.get_extra_info("peercert") or {}
        tls_client = next((v for rdn in cert.get("subject", ()) for k, v in rdn
                           if k == "commonName"), None)
        try:
            while True:
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError as e:
                    if e.partial.strip():
                        self.seq += 1
                        self.record({"seq": self.seq, "conn": conn, "peer": peer, "valid": False,
                                     "errors": ["framing: EOF inside an MLLP block (no <FS><CR>)"],
                                     "raw_b64": base64.b64encode(e.partial).decode()})
                    return
                except InvalidBlockError as e:
                    self.seq += 1
                    self.record({"seq": self.seq, "conn": conn, "peer": peer, "valid": False,
                                 "errors": [f"framing: {e}"]})
                    continue
                except ValueError as e:  # over --limit
                    self.seq += 1
                    self.record({"seq": self.seq, "conn": conn, "peer": peer, "valid": False,
                                 "errors": [f"framing: {e}"]})
                    return
                self.seq += 1
                rec, f = self.analyse(block)
                mode = self.modes.next()
                delay = 0.0
                reply = mode
                if mode.upper().startswith("SLOW:"):
                    parts = mode.split(":")
                    delay = float(parts[1])
                    reply = parts[2] if len(parts) > 2 else "AA"
                reply = reply.upper()
                ctrl = rec.get("control_id") or ""
                ack = None
                if reply == "DROP":
                    code = None
                elif reply == "AUTO":
                    if not rec["valid"]:
                        unsupported = [e for e in rec["errors"] if e.startswith(("MSH-9", "MSH-12"))]
                        code = "AR" if unsupported else "AE"
                        err = "200" if any(e.startswith("MSH-9") for e in unsupported) else \
                            "203" if unsupported else \
                            "101" if any("Missing required" in e for e in rec["errors"]) else \
                            "100" if any(e.startswith("structure") for e in rec["errors"]) else "207"
                        ack = build_ack(f, code, ctrl, rec["errors"][0], err)
                    else:
                        code = "AA"
                        ack = build_ack(f, code, ctrl)
                elif reply in ("AE", "AR"):
                    code = reply
                    ack = build_ack(f, code, ctrl, f"{code} forced by test control", "207")
                elif reply == "WRONGID":
                    code = "AA"
                    ack = build_ack(f, code, "WRONG-" + ctrl)
                else:
                    code = "AA"
                    ack = build_ack(f, code, ctrl)
                rec = {"seq": self.seq, "conn": conn, "peer": peer, "tls_client": tls_client, **rec,
                       "mode": mode, "ack_code": code, "ack": ack}
                self.record(rec)
                if delay:
                    await asyncio.sleep(delay)
                if ack is None:
                    return  # DROP: close without ACK
                codec = CHARSETS.get(msh(f, 18).split("~")[0]) or "utf-8"
                writer.writeblock(ack.encode(codec, "replace"))
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            try:
                writer.close()
            except Exception:
                pass


async def serve(args) -> None:
    recv = Receiver(args.out, Modes(args.control, args.ack_mode))
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            tls.verify_mode = ssl.CERT_REQUIRED
            tls.load_verify_locations(args.tls_client_ca)
    server = await start_hl7_server(recv.handle, args.host, args.port, limit=args.limit, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


# --------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------
def mllp_roundtrip(port: int, payload: bytes, timeout: float = 5.0, sock=None):
    """Send one framed message; return the ACK text, or None if the peer closed."""
    own = sock is None
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    try:
        s.sendall(SB + payload + EB + CR)
        buf = b""
        while not buf.endswith(EB + CR):
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
        assert buf.startswith(SB), buf
        return buf[1:-2].decode("utf-8")
    finally:
        if own:
            s.close()


def check_ack(ack: str, code: str, ctrl: str, strict: bool = True) -> None:
    m = hl7.parse(ack)
    msa = m.segment("MSA")
    assert str(msa(1)) == code, (code, ack)
    assert str(msa(2)) == ctrl, (ctrl, ack)
    if strict:  # the ACK echoes MSH-12; only a 2.5.1 ACK is checked against 2.5.1
        errs, _, _ = hl7apy_check(ack, "ACK")
        assert not errs, errs


def self_test() -> int:
    # 1. the sample validates (errors fail the test, warnings are only printed)
    v = validate_oru(SAMPLE_ORU, SAMPLE_ORU.encode("utf-8"))
    print("sample ORU^R01 valid:", v["valid"], "errors:", v["errors"])
    for w in v["warnings"]:
        print("  warning:", w)
    assert v["valid"], v["errors"]

    # 2. negative checks the receiver must catch
    bad = {
        "LF separators": SAMPLE_ORU.replace("\r", "\n"),
        "no MSH-18": SAMPLE_ORU.replace("|VNM|UNICODE UTF-8", "|VNM|"),
        "PID-3 empty": SAMPLE_ORU.replace("|PID12345^^^HOSPITAL^MR|", "||"),
        "OBX-11 empty": SAMPLE_ORU.replace("|POS^Positive^L||||||P", "|POS^Positive^L||||||"),
        "OBR-4 empty": SAMPLE_ORU.replace("36643-5^XR Chest 2 Views^LN", ""),
        "Z segment": SAMPLE_ORU + "ZCX|1|x\r",
        "OBX before OBR": SAMPLE_ORU.replace("ORC|", "OBX|9|ST|X^X^L||x||||||P\rORC|"),
        "unescaped &": SAMPLE_ORU.replace("radiologist review.", "R&D review."),
        "ISO timestamp": SAMPLE_ORU.replace("20240501101500+0700", "2024-05-01T10:15:00+07:00"),
        "version 2.3": SAMPLE_ORU.replace("|2.5.1|", "|2.3|"),
    }
    for name, text in bad.items():
        r = validate_oru(text, text.encode("utf-8"))
        assert not r["valid"], name
        print(f"  rejects {name}: {r['errors'][0][:110]}")

    # 3. run the real receiver and talk MLLP to it
    tmp = tempfile.mkdtemp(prefix="mllp-selftest-")
    out, ctl = os.path.join(tmp, "out.jsonl"), os.path.join(tmp, "mode")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--port", "0",
                             "--out", out, "--control", ctl], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "READY", line
        port = int(line[1])

        def last():
            with open(out, encoding="utf-8") as fh:
                return json.loads(fh.readlines()[-1])

        def setmode(m):
            with open(ctl, "w") as fh:
                fh.write(m + "\n")

        payload = SAMPLE_ORU.encode("utf-8")
        # python-hl7's own blocking client (one recv(4096): fine for short ACKs)
        with hl7.client.MLLPClient("127.0.0.1", port) as c:
            ack = c.send_message(SAMPLE_ORU)[1:-2].decode("utf-8")
        check_ack(ack, "AA", SAMPLE_CONTROL_ID)
        rec = last()
        assert rec["valid"] and rec["control_id"] == SAMPLE_CONTROL_ID, rec
        assert rec["patient_name"] == "NGUYỄN^THỊ HOA" and rec["raw"] == SAMPLE_ORU, rec
        print("AA via hl7.client.MLLPClient:", ack.replace("\r", "\\r"))

        for mode, code in (("AE", "AE"), ("AR", "AR")):
            setmode(mode)
            ack = mllp_roundtrip(port, payload)
            check_ack(ack, code, SAMPLE_CONTROL_ID)
            assert "ERR|" in ack
        setmode("WRONGID")
        assert "MSA|AA|WRONG-" in mllp_roundtrip(port, payload)
        setmode("DROP")
        assert mllp_roundtrip(port, payload) is None and last()["ack_code"] is None
        setmode("SLOW:1.5")
        try:
            mllp_roundtrip(port, payload, timeout=0.5)
            raise AssertionError("SLOW did not time out")
        except socket.timeout:
            pass
        t0 = time.time()
        check_ack(mllp_roundtrip(port, payload, timeout=5), "AA", SAMPLE_CONTROL_ID)
        assert time.time() - t0 >= 1.4
        # sequence on one persistent connection: DROP closes it, so reconnect
        setmode("AE,AA")
        with socket.create_connection(("127.0.0.1", port)) as s:
            check_ack(mllp_roundtrip(port, payload, sock=s), "AE", SAMPLE_CONTROL_ID)
            check_ack(mllp_roundtrip(port, payload, sock=s), "AA", SAMPLE_CONTROL_ID)
            check_ack(mllp_roundtrip(port, payload, sock=s), "AA", SAMPLE_CONTROL_ID)
        # AUTO: valid -> AA, invalid -> AE with the first error, wrong version -> AR
        setmode("AUTO")
        check_ack(mllp_roundtrip(port, payload), "AA", SAMPLE_CONTROL_ID)
        ack = mllp_roundtrip(port, bad["PID-3 empty"].encode("utf-8"))
        check_ack(ack, "AE", SAMPLE_CONTROL_ID)
        assert "PID_3" in ack and "101^" in ack, ack
        ack = mllp_roundtrip(port, bad["no MSH-18"].encode("utf-8"))
        check_ack(ack, "AE", SAMPLE_CONTROL_ID)
        assert not last()["valid"] and "MSH-18" in last()["errors"][0]
        check_ack(mllp_roundtrip(port, bad["version 2.3"].encode("utf-8")), "AR", SAMPLE_CONTROL_ID,
                  strict=False)
        with open(out, encoding="utf-8") as fh:
            n = len(fh.readlines())
        print(f"modes AE AR WRONGID DROP SLOW sequence AUTO ok; {n} records in {out}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    print("SELF-TEST OK")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port (see READY line)")
    ap.add_argument("--out", help="JSON-lines file to append one record per message to")
    ap.add_argument("--control", help="file whose first line sets the ack mode at run time")
    ap.add_argument("--ack-mode", default="AA", help="mode when --control is missing/empty")
    ap.add_argument("--limit", type=int, default=16 * 1024 * 1024, help="max MLLP block bytes")
    ap.add_argument("--tls-cert", help="server certificate chain (PEM): MLLP over TLS")
    ap.add_argument("--tls-key", help="its private key (PEM)")
    ap.add_argument("--tls-client-ca", help="require client certificates signed by this CA (PEM)")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.out:
        ap.error("--out is required")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
