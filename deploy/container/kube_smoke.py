#!/usr/bin/env python3
"""The rendered CPU overlay, made runnable by `podman kube play` on one
machine for deploy/container/test.sh: keeps the ConfigMap (its cxr.toml
replaced by a loopback configuration, since the smoke test has no TLS
certificate or identity provider) and the Deployment (its image replaced
by the one under test, the TLS and OIDC Secret volumes dropped, container
ports dropped because the pod runs on the host network). Everything else of
the Deployment — user, read-only root filesystem, dropped capabilities,
volumes, arguments — is kept as rendered.

Usage: kube_smoke.py RENDERED.yaml CONFIG.toml IMAGE > SMOKE.yaml
"""

import sys

import yaml

rendered, config, image = sys.argv[1:4]
keep = []
for doc in yaml.safe_load_all(open(rendered)):
    if not doc:
        continue
    if doc["kind"] == "ConfigMap":
        doc["data"]["cxr.toml"] = open(config).read()
        keep.append(doc)
    elif doc["kind"] == "Deployment":
        spec = doc["spec"]["template"]["spec"]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] not in ("tls", "oidc")]
        container = spec["containers"][0]
        container["image"] = image
        container.pop("ports", None)
        container["volumeMounts"] = [
            m for m in container["volumeMounts"] if m["name"] not in ("tls", "oidc")
        ]
        keep.append(doc)
yaml.safe_dump_all(keep, sys.stdout)
