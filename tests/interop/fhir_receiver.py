#!/usr/bin/env python3
"""FHIR R4 receiver (test peer) for DiagnosticReport/Observation from cxr-triage.

    .venv/bin/python tests/interop/fhir_receiver.py --port 0 --out /tmp/fhir.jsonl \
        --token SECRET [--control /tmp/fhir.mode] [--mode OK] [--fhir-version R4B]
    .venv/bin/python tests/interop/fhir_receiver.py --self-test

Threaded stdlib HTTP/1.1 server (keep-alive) with base URL http://HOST:PORT/fhir:
  POST /fhir                  transaction or batch Bundle -> 200 + *-response Bundle
  POST /fhir/{Type}           create -> 201 + Location/ETag (honours If-None-Exist)
  PUT  /fhir/{Type}/{id}      update/create -> 200/201
  GET  /fhir/{Type}/{id}      read back what was stored (refs rewritten to Type/id)
  GET  /fhir/metadata         CapabilityStatement (no token needed)
Everything else needs `Authorization: Bearer <--token>` (401 otherwise) and a
body with Content-Type application/fhir+json or application/json (415).
Bodies are validated with fhir.resources (R4B models by default: the package
has no 4.0.1 models; R4 and R4B are element-identical for the resources used
here) plus checks the models skip (required-binding codes, empty values,
decimals sent as strings, transaction entry.request, reference targets,
unresolved urn:uuid references). Invalid -> 400 + OperationOutcome; a
transaction is all-or-nothing, a batch answers per entry. `Prefer:
return=minimal|representation|OperationOutcome` is honoured on creates.

Failure mode: first line of --control (re-read per authenticated write;
missing/empty means --mode, default OK):
  OK            normal processing
  NNN           answer HTTP NNN with an OperationOutcome (e.g. 500, 503, 429,
                400, 409); 429/503 add `Retry-After: 1`; nothing is stored
  SLOW:secs[:M] sleep, then behave as M (default OK)
  DROP          close the connection without any response
or a comma list (`500,500,OK`): one entry per write, the last sticks; the
list restarts whenever the file's content changes.

Prints `READY <port>` once listening; appends one JSON line per request to
--out: seq ts method path status mode auth content_type resource_type id ids
valid errors error patient_names headers body.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fhir.resources
import fhir.resources.R4B

# --------------------------------------------------------------------------
# Sample transaction Bundle (used by --self-test; also in NOTES.md)
# --------------------------------------------------------------------------
PAT = "urn:uuid:6f1c3c1e-0b5e-4a2e-9d0a-1b2c3d4e5f60"
DEV = "urn:uuid:0d8e6c2a-3b4f-4c1d-8e9f-a1b2c3d4e5f6"
OBS1 = "urn:uuid:9a7b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
OBS2 = "urn:uuid:1b2c3d4e-5f60-4718-9a0b-c1d2e3f4a5b6"
DR = "urn:uuid:2c3d4e5f-6071-4829-8a1b-2c3d4e5f6071"
STUDY = {"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1.3680043.8.498.12345678901234567890"}
ACSN = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
        "system": "urn:oid:1.2.3.4.5.6.7", "value": "ACC123456"}
V3_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def _obs(full_url: str, sct: str, name: str, score: float, positive: bool) -> dict:
    return {
        "fullUrl": full_url,
        "resource": {
            "resourceType": "Observation",
            "identifier": [{"system": "urn:cxr-triage:finding", "value": f"ACC123456-ai-{sct}"}],
            "status": "preliminary",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "imaging", "display": "Imaging"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": sct, "display": name}],
                     "text": f"{name} (AI probability)"},
            "subject": {"reference": PAT},
            "effectiveDateTime": "2024-05-01T10:15:00+07:00",
            "issued": "2024-05-01T10:30:00+07:00",
            "valueQuantity": {"value": score, "unit": "probability",
                              "system": "http://unitsofmeasure.org", "code": "1"},
            "interpretation": [{"coding": [{"system": V3_INTERP, "code": "POS" if positive else "NEG",
                                            "display": "Positive" if positive else "Negative"}]}],
            "note": [{"text": "AI result — not for primary diagnosis"}],
            "device": {"reference": DEV},
            "derivedFrom": [{"type": "ImagingStudy", "identifier": STUDY}],
        },
        "request": {"method": "POST", "url": "Observation",
                    "ifNoneExist": f"identifier=urn:cxr-triage:finding|ACC123456-ai-{sct}"},
    }


SAMPLE_BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {"fullUrl": PAT,
         "resource": {"resourceType": "Patient",
                      "identifier": [{"system": "urn:oid:1.2.3.4.5.6", "value": "PID12345"}],
                      "name": [{"text": "Nguyễn Thị Hoa", "family": "Nguyễn", "given": ["Thị", "Hoa"]}],
                      "gender": "female", "birthDate": "1980-01-01"},
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": "identifier=urn:oid:1.2.3.4.5.6|PID12345"}},
        {"fullUrl": DEV,
         "resource": {"resourceType": "Device", "status": "active", "manufacturer": "cxr-triage",
                      "identifier": [{"system": "urn:cxr-triage:model", "value": "cxr-densenet121-1.4.2"}],
                      "deviceName": [{"name": "cxr-densenet121", "type": "model-name"}],
                      "version": [{"value": "1.4.2"}]},
         "request": {"method": "POST", "url": "Device",
                     "ifNoneExist": "identifier=urn:cxr-triage:model|cxr-densenet121-1.4.2"}},
        _obs(OBS1, "233604007", "Pneumonia", 0.87, True),
        _obs(OBS2, "60046008", "Pleural effusion", 0.12, False),
        {"fullUrl": DR,
         "resource": {
             "resourceType": "DiagnosticReport",
             "identifier": [{"system": "urn:cxr-triage:report", "value": "ACC123456-ai"}],
             "basedOn": [{"type": "ServiceRequest", "identifier": ACSN}],
             "status": "preliminary",
             "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                       "code": "RAD", "display": "Radiology"}]}],
             "code": {"coding": [{"system": "http://loinc.org", "code": "36643-5",
                                  "display": "XR Chest 2 Views"}]},
             "subject": {"reference": PAT},
             "effectiveDateTime": "2024-05-01T10:15:00+07:00",
             "issued": "2024-05-01T10:30:00+07:00",
             "result": [{"reference": OBS1}, {"reference": OBS2}],
             "imagingStudy": [{"type": "ImagingStudy", "identifier": STUDY}],
             "conclusion": "AI triage: suspected pneumonia (p=0.87). AI result — not for primary diagnosis.",
         },
         "request": {"method": "POST", "url": "DiagnosticReport",
                     "ifNoneExist": "identifier=urn:cxr-triage:report|ACC123456-ai"}},
    ],
}

# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------
REQUIRED_CODES = {  # required bindings fhir.resources does not enforce
    ("DiagnosticReport", "status"): {"registered", "partial", "preliminary", "final", "amended", "corrected",
                                     "appended", "cancelled", "entered-in-error", "unknown"},
    ("Observation", "status"): {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                "entered-in-error", "unknown"},
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Device", "status"): {"active", "inactive", "entered-in-error", "unknown"},
}
REF_TARGETS = {  # (resource, element) -> allowed target types (R4)
    ("DiagnosticReport", "subject"): {"Patient", "Group", "Device", "Location"},
    ("DiagnosticReport", "result"): {"Observation"},
    ("DiagnosticReport", "imagingStudy"): {"ImagingStudy"},
    ("DiagnosticReport", "basedOn"): {"CarePlan", "ImmunizationRecommendation", "MedicationRequest",
                                      "NutritionOrder", "ServiceRequest"},
    ("DiagnosticReport", "performer"): {"Practitioner", "PractitionerRole", "Organization", "CareTeam"},
    ("Observation", "subject"): {"Patient", "Group", "Device", "Location"},
    ("Observation", "device"): {"Device", "DeviceMetric"},
    ("Observation", "derivedFrom"): {"DocumentReference", "ImagingStudy", "Media", "QuestionnaireResponse",
                                     "Observation", "MolecularSequence"},
}
METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}


def model_class(version: str, rtype: str):
    pkg = fhir.resources.R4B if version == "R4B" else fhir.resources
    return pkg.get_fhir_model_class(rtype)


def fhirpath(prefix: str, loc) -> str:
    out = prefix
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def model_errors(doc: dict, version: str) -> list[dict]:
    rtype = doc.get("resourceType") if isinstance(doc, dict) else None
    if not isinstance(rtype, str):
        return [{"code": "structure", "expr": "", "msg": "not a FHIR resource (no resourceType)"}]
    try:
        cls = model_class(version, rtype)
    except Exception:
        return [{"code": "not-supported", "expr": rtype, "msg": f"unknown resourceType {rtype!r}"}]
    try:
        cls.model_validate(doc)
        return []
    except Exception as e:
        if not hasattr(e, "errors"):
            return [{"code": "invalid", "expr": rtype, "msg": f"{type(e).__name__}: {e}"}]
        out = []
        for err in e.errors():
            t = err.get("type", "")
            code = "required" if "missing" in t else "structure" if t == "extra_forbidden" else "value"
            out.append({"code": code, "expr": fhirpath(rtype, err.get("loc", ())), "msg": err.get("msg", "")})
        return out


def ref_target(ref: dict, full_urls: dict) -> str | None:
    r = ref.get("reference")
    if isinstance(r, str):
        if r in full_urls:
            return full_urls[r]
        m = re.match(r"^(?:.*/)?([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/.*)?$", r)
        if m:
            return m.group(1)
    return ref.get("type")


def extra_errors(res: dict, expr: str, full_urls: dict) -> list[dict]:
    """Checks fhir.resources does not do, for one resource."""
    errs: list[dict] = []
    rtype = res.get("resourceType", "")

    def walk(node, path):
        if node is None or node == [] or node == {} or (isinstance(node, str) and not node.strip()):
            errs.append({"code": "value", "expr": path, "msg": "empty/null value (FHIR JSON forbids it)"})
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(res, expr)
    for (t, el), codes in REQUIRED_CODES.items():
        if t == rtype and el in res and res[el] not in codes:
            errs.append({"code": "code-invalid", "expr": f"{expr}.{el}",
                         "msg": f"{res[el]!r} is not in the required value set"})
    for el in ("valueQuantity",):
        q = res.get(el)
        if isinstance(q, dict) and "value" in q and not isinstance(q["value"], (int, float)):
            errs.append({"code": "value", "expr": f"{expr}.{el}.value", "msg": "decimal must be a JSON number"})
    for (t, el), targets in REF_TARGETS.items():
        if t != rtype or el not in res:
            continue
        refs = res[el] if isinstance(res[el], list) else [res[el]]
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict):
                continue
            r = ref.get("reference")
            if isinstance(r, str) and r.startswith("urn:uuid:") and r not in full_urls:
                errs.append({"code": "not-found", "expr": f"{expr}.{el}", "msg": f"unresolved reference {r}"})
                continue
            tgt = ref_target(ref, full_urls)
            if tgt and tgt not in targets:
                errs.append({"code": "value", "expr": f"{expr}.{el}",
                             "msg": f"reference to {tgt} not allowed (want {sorted(targets)})"})
    return errs


def validate(doc, version: str, expect_type: str | None = None) -> list[dict]:
    """All issues for a resource or a transaction/batch Bundle; [] means valid."""
    if not isinstance(doc, dict):
        return [{"code": "structure", "expr": "", "msg": "body is not a JSON object"}]
    rtype = doc.get("resourceType")
    if expect_type and rtype != expect_type:
        return [{"code": "processing", "expr": "resourceType",
                 "msg": f"resourceType {rtype!r} posted to /{expect_type}"}]
    errs = model_errors(doc, version)
    if rtype != "Bundle":
        return errs + extra_errors(doc, rtype, {})
    entries = doc.get("entry") or []
    full_urls = {e.get("fullUrl"): (e.get("resource") or {}).get("resourceType")
                 for e in entries if isinstance(e, dict) and e.get("fullUrl")}
    if doc.get("type") not in ("transaction", "batch"):
        errs.append({"code": "value", "expr": "Bundle.type",
                     "msg": f"type {doc.get('type')!r}: POST to the base needs transaction or batch"})
    if len(full_urls) != len([e for e in entries if isinstance(e, dict) and e.get("fullUrl")]):
        errs.append({"code": "duplicate", "expr": "Bundle.entry.fullUrl", "msg": "duplicate fullUrl"})
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            continue
        p = f"Bundle.entry[{i}]"
        req = e.get("request")
        if not isinstance(req, dict):
            errs.append({"code": "required", "expr": f"{p}.request", "msg": "entry.request required (bdl-3)"})
        elif req.get("method") not in METHODS:
            errs.append({"code": "code-invalid", "expr": f"{p}.request.method",
                         "msg": f"{req.get('method')!r} is not an HTTP verb"})
        fu = e.get("fullUrl")
        if fu is not None and not re.match(r"^(urn:uuid:[0-9a-f-]{36}|urn:oid:[0-9.]+|https?://\S+)$", fu):
            errs.append({"code": "value", "expr": f"{p}.fullUrl", "msg": f"fullUrl {fu!r} is not absolute"})
        if isinstance(e.get("resource"), dict):
            errs += extra_errors(e["resource"], f"{p}.resource", full_urls)
    return errs


def operation_outcome(issues: list[dict], severity: str = "error") -> dict:
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": severity, "code": i["code"], "diagnostics": i["msg"],
         **({"expression": [i["expr"]]} if i.get("expr") else {})} for i in issues]}


def patient_names(doc) -> list[str]:
    names: list[str] = []

    def visit(node):
        if isinstance(node, dict):
            if node.get("resourceType") == "Patient":
                for n in node.get("name") or []:
                    if isinstance(n, dict):
                        names.append(n.get("text") or " ".join([n.get("family", "")] + n.get("given", [])).strip())
            subj = node.get("subject")
            if isinstance(subj, dict) and subj.get("display"):
                names.append(subj["display"])
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(doc)
    return list(dict.fromkeys(names))


def rewrite_refs(node, mapping: dict):
    if isinstance(node, dict):
        return {k: (mapping.get(v, v) if k == "reference" and isinstance(v, str) else rewrite_refs(v, mapping))
                for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite_refs(v, mapping) for v in node]
    return node


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------
class Modes:
    def __init__(self, path: str | None, default: str):
        self.path, self.default = path, default
        self.content, self.index = None, 0
        self.lock = threading.Lock()

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
        with self.lock:
            if content != self.content:
                self.content, self.index = content, 0
            items = [x.strip() for x in content.split(",") if x.strip()]
            mode = items[min(self.index, len(items) - 1)]
            self.index += 1
            return mode


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.resources: dict[tuple[str, str], dict] = {}
        self.by_identifier: dict[tuple[str, str], str] = {}

    def find(self, rtype: str, criteria: str) -> tuple[str | None, str | None]:
        """ifNoneExist / If-None-Exist: only `identifier=system|value` is supported."""
        q = urllib.parse.parse_qs(criteria.split("?", 1)[-1])
        if set(q) != {"identifier"}:
            return None, f"unsupported conditional criteria {criteria!r} (only identifier=)"
        return self.by_identifier.get((rtype, q["identifier"][0])), None

    def put(self, rtype: str, rid: str, res: dict) -> tuple[dict, bool]:
        with self.lock:
            old = self.resources.get((rtype, rid))
            version = int(old["meta"]["versionId"]) + 1 if old else 1
            res = {**res, "id": rid, "meta": {"versionId": str(version),
                                              "lastUpdated": dt.datetime.now(dt.timezone.utc).isoformat()}}
            self.resources[(rtype, rid)] = res
            for ident in res.get("identifier") or []:
                if isinstance(ident, dict) and ident.get("value"):
                    self.by_identifier[(rtype, f"{ident.get('system', '')}|{ident['value']}")] = rid
            return res, old is None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cxr-interop-fhir/1"
    cfg: argparse.Namespace
    store: Store
    modes: Modes
    out_lock = threading.Lock()
    seq = 0

    def log_message(self, fmt, *args):
        if self.cfg.verbose:
            super().log_message(fmt, *args)

    # -- plumbing ----------------------------------------------------------
    def record(self, rec: dict) -> None:
        with Handler.out_lock:
            Handler.seq += 1
            rec = {"seq": Handler.seq, "ts": dt.datetime.now().astimezone().isoformat(),
                   "method": self.command, "path": self.path, **rec}
            with open(self.cfg.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}{self.cfg.base}"

    def auth(self) -> str:
        h = self.headers.get("Authorization") or ""
        scheme, _, tok = h.partition(" ")
        if not h:
            return "missing"
        return "ok" if scheme.lower() == "bearer" and tok.strip() == self.cfg.token else "invalid"

    def route(self) -> list[str] | None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        base = self.cfg.base.rstrip("/")
        if path != base and not path.startswith(base + "/"):
            return None
        return [p for p in path[len(base):].split("/") if p]

    # -- verbs -------------------------------------------------------------
    def do_GET(self):
        parts = self.route()
        if parts == ["metadata"]:
            return self.send(200, {"resourceType": "CapabilityStatement", "status": "active",
                                   "date": "2024-05-01", "kind": "instance", "fhirVersion": "4.0.1",
                                   "format": ["application/fhir+json"],
                                   "rest": [{"mode": "server", "resource": [
                                       {"type": t, "interaction": [{"code": "create"}, {"code": "read"},
                                                                   {"code": "update"}]}
                                       for t in ("DiagnosticReport", "Observation", "Patient", "Device")]}]})
        if self.auth() != "ok":
            return self.unauthorized({})
        if parts and len(parts) == 2:
            res = self.store.resources.get((parts[0], parts[1]))
            if res:
                return self.send(200, res, {"ETag": f'W/"{res["meta"]["versionId"]}"'})
        self.send(404, operation_outcome([{"code": "not-found", "expr": "", "msg": f"{self.path} not found"}]))

    def do_POST(self):
        self.write_request()

    def do_PUT(self):
        self.write_request()

    def unauthorized(self, rec: dict) -> None:
        a = self.auth()
        hdr = 'Bearer realm="fhir"' + ('' if a == "missing" else ', error="invalid_token"')
        self.send(401, operation_outcome([{"code": "login", "expr": "", "msg": f"bearer token {a}"}]),
                  {"WWW-Authenticate": hdr})
        if rec is not None:
            self.record({**rec, "status": 401, "auth": a})

    def write_request(self):
        raw = self.read_body()
        parts = self.route()
        ctype = self.headers.get("Content-Type") or ""
        rec = {"auth": self.auth(), "content_type": ctype,
               "headers": {k: self.headers[k] for k in ("Prefer", "If-None-Exist", "User-Agent", "Accept",
                                                        "X-Request-Id") if self.headers.get(k)}}
        try:
            text = raw.decode("utf-8")
            body = json.loads(text) if text.strip() else None
            rec["body"] = body
        except (UnicodeDecodeError, ValueError) as e:
            body = None
            rec["body"] = raw.decode("utf-8", "replace")
            rec["json_error"] = str(e)
        if rec["auth"] != "ok":
            return self.unauthorized(rec)
        mode = self.modes.next()
        rec["mode"] = mode
        if mode.upper().startswith("SLOW:"):
            bits = mode.split(":")
            time.sleep(float(bits[1]))
            mode = bits[2] if len(bits) > 2 else "OK"

        # what would be stored: validate first so every record carries it
        issues: list[dict] = []
        expect = None
        if parts is None or (self.command == "POST" and len(parts) > 1) or \
                (self.command == "PUT" and len(parts) != 2):
            return self.finish_error(rec, 404, [{"code": "not-found", "expr": "", "msg": "no such endpoint"}])
        media = ctype.split(";")[0].strip().lower()
        if media not in ("application/fhir+json", "application/json"):
            return self.finish_error(rec, 415, [{"code": "not-supported", "expr": "",
                                                 "msg": f"Content-Type {ctype!r}; want application/fhir+json"}])
        if "charset=" in ctype.lower() and "utf-8" not in ctype.lower():
            return self.finish_error(rec, 415, [{"code": "not-supported", "expr": "", "msg": "charset must be utf-8"}])
        if "json_error" in rec or body is None:
            issues = [{"code": "structure", "expr": "", "msg": f"body is not JSON: {rec.get('json_error', 'empty')}"}]
        else:
            expect = parts[0] if parts else "Bundle"
            issues = validate(body, self.cfg.fhir_version, expect)
        rtype = body.get("resourceType") if isinstance(body, dict) else None
        rec.update(resource_type=rtype, valid=not issues, errors=[f"{i['expr']}: {i['msg']}" for i in issues],
                   patient_names=patient_names(body))
        rec["error"] = "; ".join(rec["errors"]) or None

        if mode.upper() == "DROP":
            self.close_connection = True
            self.record({**rec, "status": None})
            return
        if re.fullmatch(r"\d{3}", mode):
            code = int(mode)
            hdr = {"Retry-After": "1"} if code in (429, 503) else {}
            kind = "throttled" if code == 429 else "transient" if code >= 500 else "processing"
            return self.finish_error(rec, code, [{"code": kind, "expr": "", "msg": f"HTTP {code} forced by test"}],
                                     hdr)
        if issues:  # a batch with only per-entry issues is answered entry by entry
            whole = [i for i in issues if not i["expr"].startswith("Bundle.entry[")]
            if whole or not (rtype == "Bundle" and not parts and body.get("type") == "batch"):
                return self.finish_error(rec, 400, issues)
        if rtype == "Bundle" and not parts:
            return self.transaction(rec, body, issues)
        return self.create(rec, body, parts)

    def finish_error(self, rec, status, issues, headers=None):
        self.send(status, operation_outcome(issues), headers)
        self.record({**rec, "status": status})

    def create(self, rec, body, parts):
        rtype = parts[0]
        with self.store.lock:
            cond = self.headers.get("If-None-Exist")
            if self.command == "POST" and cond:
                found, err = self.store.find(rtype, cond)
                if err:
                    return self.finish_error(rec, 400, [{"code": "not-supported", "expr": "", "msg": err}])
                if found:
                    res = self.store.resources[(rtype, found)]
                    return self.respond_created(rec, res, 200)
            rid = parts[1] if self.command == "PUT" else uuid.uuid4().hex
            if self.command == "PUT" and body.get("id") not in (None, rid):
                return self.finish_error(rec, 400, [{"code": "invalid", "expr": f"{rtype}.id",
                                                     "msg": "id in body differs from URL"}])
            res, new = self.store.put(rtype, rid, body)
        self.respond_created(rec, res, 201 if new else 200)

    def respond_created(self, rec, res, status):
        loc = f"{self.base_url()}/{res['resourceType']}/{res['id']}/_history/{res['meta']['versionId']}"
        hdr = {"Location": loc, "ETag": f'W/"{res["meta"]["versionId"]}"', "Last-Modified":
               dt.datetime.fromisoformat(res["meta"]["lastUpdated"]).strftime("%a, %d %b %Y %H:%M:%S GMT")}
        prefer = (self.headers.get("Prefer") or "").replace(" ", "").lower()
        if "return=minimal" in prefer:
            body = None
        elif "return=operationoutcome" in prefer:
            body = operation_outcome([{"code": "informational", "expr": "", "msg": "created"}], "information")
        else:
            body = res
        self.send(status, body, hdr)
        self.record({**rec, "status": status, "id": res["id"], "location": loc})

    def transaction(self, rec, bundle, issues):
        kind = bundle["type"]
        bad = {int(m.group(1)) for i in issues if (m := re.match(r"Bundle\.entry\[(\d+)\]", i["expr"]))}
        entries = bundle.get("entry") or []
        out_entries, mapping, ids, staged = [], {}, [], []
        with self.store.lock:
            # pass 1: ids (conditional creates resolve to existing ones)
            for i, e in enumerate(entries):
                res, req = e.get("resource") or {}, e.get("request") or {}
                rtype = res.get("resourceType") or req.get("url", "").split("/")[0].split("?")[0]
                if i in bad:
                    staged.append(("error", i, None, None))
                    continue
                if req.get("method") == "POST" and req.get("ifNoneExist"):
                    found, err = self.store.find(rtype, req["ifNoneExist"])
                    if err:
                        if kind == "transaction":
                            return self.finish_error(rec, 400, [{"code": "not-supported",
                                                                 "expr": f"Bundle.entry[{i}].request", "msg": err}])
                        staged.append(("error", i, None, err))
                        continue
                    if found:
                        staged.append(("exists", i, rtype, found))
                        if e.get("fullUrl"):
                            mapping[e["fullUrl"]] = f"{rtype}/{found}"
                        continue
                if req.get("method") == "POST":
                    rid = uuid.uuid4().hex
                elif req.get("method") == "PUT":
                    rid = req.get("url", "").split("?")[0].split("/")[-1]
                else:
                    if kind == "transaction":
                        return self.finish_error(rec, 400, [{"code": "not-supported",
                                                             "expr": f"Bundle.entry[{i}].request.method",
                                                             "msg": "only POST/PUT are supported here"}])
                    staged.append(("error", i, None, "only POST/PUT are supported here"))
                    continue
                staged.append(("write", i, rtype, rid))
                if e.get("fullUrl"):
                    mapping[e["fullUrl"]] = f"{rtype}/{rid}"
            # pass 2: store with urn:uuid references rewritten
            for what, i, rtype, rid in staged:
                if what == "error":
                    msgs = [iss for iss in issues if iss["expr"].startswith(f"Bundle.entry[{i}]")] or \
                        [{"code": "processing", "expr": "", "msg": rid or "error"}]
                    out_entries.append({"response": {"status": "400 Bad Request",
                                                     "outcome": operation_outcome(msgs)}})
                    ids.append({"index": i, "status": 400})
                    continue
                if what == "exists":
                    res = self.store.resources[(rtype, rid)]
                    status = "200 OK"
                else:
                    src = rewrite_refs(copy.deepcopy(entries[i]["resource"]), mapping)
                    res, new = self.store.put(rtype, rid, src)
                    status = "201 Created" if new else "200 OK"
                v = res["meta"]["versionId"]
                out_entries.append({"response": {"status": status,
                                                 "location": f"{rtype}/{res['id']}/_history/{v}",
                                                 "etag": f'W/"{v}"', "lastModified": res["meta"]["lastUpdated"]}})
                ids.append({"index": i, "resourceType": rtype, "id": res["id"], "status": int(status[:3]),
                            "fullUrl": entries[i].get("fullUrl")})
        resp = {"resourceType": "Bundle", "id": uuid.uuid4().hex, "type": f"{kind}-response",
                "entry": out_entries}
        self.send(200, resp)
        self.record({**rec, "status": 200, "ids": ids})


def serve(args) -> None:
    store, modes = Store(), Modes(args.control, args.mode)

    class H(Handler):
        pass

    H.cfg, H.store, H.modes = args, store, modes
    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
                super().handle_error(request, client_address)

    server = Server((args.host, args.port), H)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------
def call(port, method, path, body=None, token="secret", ctype="application/fhir+json", timeout=5.0,
         headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": ctype, "Accept": "application/fhir+json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body, ensure_ascii=False).encode()
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        return r.status, dict(r.getheaders()), (json.loads(raw) if raw else None)
    finally:
        c.close()


def self_test() -> int:
    R4B = "R4B"
    errs = validate(SAMPLE_BUNDLE, R4B)
    assert not errs, errs
    r5 = validate(SAMPLE_BUNDLE, "R5")
    print("sample Bundle: R4B valid; default (R5) models reject it:", sorted({e["expr"] for e in r5}))
    dr = SAMPLE_BUNDLE["entry"][4]["resource"]
    ob = SAMPLE_BUNDLE["entry"][2]["resource"]

    def mutate(f):
        b = copy.deepcopy(SAMPLE_BUNDLE)
        f(b)
        return b

    negatives = {
        "DR.status missing": mutate(lambda b: b["entry"][4]["resource"].pop("status")),
        "DR.status 'prelim'": mutate(lambda b: b["entry"][4]["resource"].update(status="prelim")),
        "DR.code missing": mutate(lambda b: b["entry"][4]["resource"].pop("code")),
        "DR R5 element 'study'": mutate(lambda b: b["entry"][4]["resource"].update(study=[{"reference": "x"}])),
        "issued without tz": mutate(lambda b: b["entry"][4]["resource"].update(issued="2024-05-01T10:30:00")),
        "score as string": mutate(lambda b: b["entry"][2]["resource"]["valueQuantity"].update(value="0.87")),
        "empty array": mutate(lambda b: b["entry"][4]["resource"].update(basedOn=[])),
        "entry without request": mutate(lambda b: b["entry"][4].pop("request")),
        "unresolved urn:uuid": mutate(lambda b: b["entry"][4]["resource"]["result"].append(
            {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"})),
        "performer Device": mutate(lambda b: b["entry"][4]["resource"].update(performer=[{"reference": DEV}])),
        "bundle type collection": mutate(lambda b: b.update(type="collection")),
    }
    for name, doc in negatives.items():
        e = validate(doc, R4B)
        assert e, name
        print(f"  rejects {name}: {e[0]['expr']}: {e[0]['msg'][:80]}")

    tmp = tempfile.mkdtemp(prefix="fhir-selftest-")
    out, ctl = os.path.join(tmp, "out.jsonl"), os.path.join(tmp, "mode")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--port", "0", "--out", out,
                             "--token", "secret", "--control", ctl], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "READY", line
        port = int(line[1])

        def setmode(m):
            with open(ctl, "w") as fh:
                fh.write(m + "\n")

        def last():
            with open(out, encoding="utf-8") as fh:
                return json.loads(fh.readlines()[-1])

        s, _, cap = call(port, "GET", "/fhir/metadata", token=None)
        assert s == 200 and cap["fhirVersion"] == "4.0.1"
        s, h, oo = call(port, "POST", "/fhir", SAMPLE_BUNDLE, token=None)
        assert s == 401 and h["WWW-Authenticate"].startswith("Bearer") and oo["resourceType"] == "OperationOutcome"
        s, h, _ = call(port, "POST", "/fhir", SAMPLE_BUNDLE, token="wrong")
        assert s == 401 and "invalid_token" in h["WWW-Authenticate"]

        s, _, resp = call(port, "POST", "/fhir", SAMPLE_BUNDLE)
        assert s == 200 and resp["type"] == "transaction-response", (s, resp)
        assert [e["response"]["status"] for e in resp["entry"]] == ["201 Created"] * 5, resp
        fhir.resources.R4B.get_fhir_model_class("Bundle").model_validate(resp)
        rec = last()
        assert rec["valid"] and "Nguyễn Thị Hoa" in rec["patient_names"], rec
        pat_loc, dr_loc = resp["entry"][0]["response"]["location"], resp["entry"][4]["response"]["location"]
        s, _, stored = call(port, "GET", "/fhir/" + dr_loc.split("/_history")[0])
        assert s == 200 and stored["subject"]["reference"] == pat_loc.split("/_history")[0], stored
        print("transaction: 5 x 201 Created; urn:uuid refs rewritten, e.g. subject ->",
              stored["subject"]["reference"])
        s, _, resp2 = call(port, "POST", "/fhir", SAMPLE_BUNDLE)
        assert [e["response"]["status"][:3] for e in resp2["entry"]] == ["200"] * 5, resp2
        assert resp2["entry"][0]["response"]["location"] == pat_loc
        print("re-post: every entry is a conditional create (ifNoneExist) -> 200 OK, same locations")

        pid = pat_loc.split("/")[1]
        single_dr = rewrite_refs(copy.deepcopy(dr), {PAT: f"Patient/{pid}"})
        single_dr["result"] = [{"reference": "Observation/x1"}]
        s, h, res = call(port, "POST", "/fhir/DiagnosticReport", single_dr)
        assert s == 201 and re.match(rf"http://127\.0\.0\.1:{port}/fhir/DiagnosticReport/\w+/_history/1$",
                                     h["Location"]) and h["ETag"] == 'W/"1"', (s, h)
        assert res["id"] and res["meta"]["versionId"] == "1"
        single_obs = rewrite_refs(copy.deepcopy(ob), {PAT: f"Patient/{pid}", DEV: "Device/d1"})
        s, h, res = call(port, "POST", "/fhir/Observation", single_obs, headers={"Prefer": "return=minimal"})
        assert s == 201 and res is None and "/fhir/Observation/" in h["Location"]
        print("single creates: 201 + Location", h["Location"])

        bad = copy.deepcopy(single_dr)
        bad.pop("status")
        s, _, oo = call(port, "POST", "/fhir/DiagnosticReport", bad)
        assert s == 400 and oo["issue"][0]["expression"] == ["DiagnosticReport.status"], oo
        fhir.resources.R4B.get_fhir_model_class("OperationOutcome").model_validate(oo)
        assert not last()["valid"] and last()["status"] == 400
        s, _, oo = call(port, "POST", "/fhir/Observation", single_dr)
        assert s == 400, oo
        s, _, _ = call(port, "POST", "/fhir/DiagnosticReport", single_dr, ctype="text/plain")
        assert s == 415
        s, _, oo = call(port, "POST", "/fhir", negatives["score as string"])
        assert s == 400 and "valueQuantity.value" in oo["issue"][0]["expression"][0], oo
        print("400 OperationOutcome on invalid bodies; 415 on wrong Content-Type")

        setmode("500")
        assert call(port, "POST", "/fhir", SAMPLE_BUNDLE)[0] == 500
        setmode("503")
        s, h, _ = call(port, "POST", "/fhir", SAMPLE_BUNDLE)
        assert s == 503 and h["Retry-After"] == "1"
        setmode("400")
        assert call(port, "POST", "/fhir/DiagnosticReport", single_dr)[0] == 400
        setmode("SLOW:1.5")
        try:
            call(port, "POST", "/fhir/DiagnosticReport", single_dr, timeout=0.5)
            raise AssertionError("SLOW did not time out")
        except socket.timeout:
            pass
        setmode("DROP")
        try:
            call(port, "POST", "/fhir/DiagnosticReport", single_dr)
            raise AssertionError("DROP answered")
        except (http.client.RemoteDisconnected, ConnectionResetError):
            pass
        setmode("500,503,OK")
        got = [call(port, "POST", "/fhir/DiagnosticReport", single_dr)[0] for _ in range(4)]
        assert got == [500, 503, 201, 201], got
        setmode("OK")
        with open(out, encoding="utf-8") as fh:
            n = len(fh.readlines())
        print(f"modes 500 503 400 SLOW DROP sequence ok; {n} records in {out}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    print("SELF-TEST OK")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port (see READY line)")
    ap.add_argument("--out", help="JSON-lines file to append one record per request to")
    ap.add_argument("--token", help="bearer token required on every request but GET metadata")
    ap.add_argument("--control", help="file whose first line sets the failure mode at run time")
    ap.add_argument("--mode", default="OK", help="mode when --control is missing/empty")
    ap.add_argument("--base", default="/fhir", help="path of the FHIR base")
    ap.add_argument("--fhir-version", choices=["R4B", "R5"], default="R4B",
                    help="fhir.resources model set (R4B is the closest to R4 4.0.1 in 8.x)")
    ap.add_argument("--verbose", action="store_true", help="log each request to stderr")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.out or not args.token:
        ap.error("--out and --token are required")
    serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
