#!/usr/bin/env python3
"""Walk the OIDC authorization-code flow (PKCE S256 + nonce + state) against
oidc-provider-mock, as a browser and a relying party would, with urllib only.

    .venv/bin/python tests/web/oidc_flow_demo.py [PORT]

Starts tests/web/oidc_idp.py as a subprocess, signs in two users and prints
the id_token header and claims. Exits non-zero if a check fails.
"""

import base64
import hashlib
import json
import pathlib
import secrets
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 19400
CLIENT_ID, CLIENT_SECRET = "cxr-triage", "any-secret"  # any values are accepted
REDIRECT_URI = "http://127.0.0.1:8080/auth/callback"  # never fetched here


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # surface the 302 as an HTTPError so we can read Location


http = urllib.request.build_opener(NoRedirect)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def sign_in(issuer: str, sub: str, client_auth: str) -> dict:
    # 1. Discovery.
    disc = json.load(http.open(f"{issuer}/.well-known/openid-configuration"))
    assert disc["issuer"] == issuer, disc["issuer"]

    # 2. Authorization request (the browser's GET): PKCE S256, nonce, state.
    verifier = b64url(secrets.token_bytes(32))
    challenge = b64url(hashlib.sha256(verifier.encode()).digest())
    nonce, state = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    auth_url = disc["authorization_endpoint"] + "?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI, "scope": "openid profile email",
        "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    })
    page = http.open(auth_url).read().decode()
    assert 'name="sub"' in page  # the HTML form: <input name="sub" placeholder="sub">

    # 3. Submit the form as the browser does: POST sub=... to the same URL
    #    (the form has no action, so query parameters are kept).
    try:
        http.open(auth_url, data=urllib.parse.urlencode({"sub": sub}).encode())
        raise SystemExit("expected a 302 to the redirect_uri")
    except urllib.error.HTTPError as e:
        assert e.code == 302, e.code
        location = e.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    q = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
    assert q["state"] == [state]
    code = q["code"][0]

    # 4. Token request (the relying party's back channel).
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if client_auth == "client_secret_basic":
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        headers["Authorization"] = "Basic " + basic
    else:  # client_secret_post
        form.update(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    req = urllib.request.Request(disc["token_endpoint"],
                                 urllib.parse.urlencode(form).encode(), headers)
    tokens = json.load(http.open(req))
    print(f"--- {sub} ({client_auth}) token response keys:", sorted(tokens))

    # 5. Decode the id_token (not verified here; the JWKS is at disc["jwks_uri"]).
    h, p, _sig = tokens["id_token"].split(".")
    header, claims = b64url_json(h), b64url_json(p)
    print("id_token header:", header)
    print("id_token claims:", json.dumps(claims, indent=1))
    assert header["alg"] == "RS256"
    # iss has no trailing slash; aud is a JSON *array* ["<client_id>"].
    assert claims["iss"] == issuer and claims["aud"] == [CLIENT_ID]
    assert claims["sub"] == sub and claims["nonce"] == nonce
    # The header carries no "kid"; the JWKS holds exactly one RSA key (its kid
    # is the key's thumbprint, new on every start), so a verifier must fall
    # back to the single key when kid is absent.
    keys = json.load(http.open(disc["jwks_uri"]))["keys"]
    assert len(keys) == 1 and header.get("kid") in (None, keys[0]["kid"])
    return claims


def main() -> None:
    launcher = pathlib.Path(__file__).with_name("oidc_idp.py")
    # alice gets her roles from the launcher (pre-registered user).
    idp = subprocess.Popen([sys.executable, str(launcher), "--port", str(PORT),
                            "--user", "alice:reader"],
                           stdout=subprocess.PIPE, text=True)
    try:
        ready = idp.stdout.readline().split()
        assert ready[:1] == ["READY"], ready
        issuer = ready[1]
        # bob gets his claims through the HTTP API: PUT /users/{sub}, JSON body,
        # 204 No Content. This replaces all of bob's claims.
        req = urllib.request.Request(f"{issuer}/users/bob", method="PUT",
                                     data=json.dumps({"roles": ["reader", "admin"],
                                                      "name": "Bob"}).encode(),
                                     headers={"Content-Type": "application/json"})
        assert http.open(req).status == 204

        assert sign_in(issuer, "alice", "client_secret_basic")["roles"] == ["reader"]
        assert sign_in(issuer, "bob", "client_secret_post")["roles"] == ["reader", "admin"]
        print("OK")
    finally:
        idp.terminate()
        idp.wait(5)


if __name__ == "__main__":
    main()
