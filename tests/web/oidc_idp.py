#!/usr/bin/env python3
"""Foreground launcher for the oidc-provider-mock OpenID provider (test IdP).

    .venv/bin/python tests/web/oidc_idp.py --port 9400 [--user alice:reader,admin ...]

Serves on 127.0.0.1:PORT until killed (SIGTERM/SIGINT) and prints one line
`READY http://127.0.0.1:PORT` (the issuer) once the socket is listening.
Each --user NAME:ROLE,... pre-registers subject NAME with the claim
{"roles": [ROLE, ...]}; the authorization form also shows it as a one-click
button. Any client_id/secret is accepted; other subjects typed into the form
get {"email": sub} only. More users can be added later with
PUT /users/{sub} and a JSON body of claims.

The issuer is taken from each request's Host header, so clients must use
http://127.0.0.1:PORT (not localhost) to get the matching `iss`.
"""

import argparse
import os
import signal
import sys

# authlib refuses plain http unless this is set (the package's CLI sets it too).
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*deprecated.*")

import oidc_provider_mock  # noqa: E402
import werkzeug.serving  # noqa: E402


def parse_user(spec: str) -> oidc_provider_mock.User:
    name, _, roles = spec.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"bad --user {spec!r}: want NAME:role1,role2")
    return oidc_provider_mock.User(
        sub=name, claims={"roles": [r for r in roles.split(",") if r]}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", type=parse_user, action="append", default=[],
                    metavar="NAME:ROLE,...")
    args = ap.parse_args()

    app = oidc_provider_mock.app(user_claims=args.user)
    # make_server binds and listens before returning, so READY is truthful.
    server = werkzeug.serving.make_server("127.0.0.1", args.port, app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY http://127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
