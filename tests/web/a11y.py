#!/usr/bin/env python3
"""WCAG 2 A/AA audit of the current Playwright page with axe-core, offline.

axe-playwright-python bundles axe.min.js (axe-core 4.12.1) and injects it
with page.evaluate(<script source>). That runs over CDP, so the service's
strict Content-Security-Policy (script-src 'self', no 'unsafe-inline' or
'unsafe-eval') does not block it, where page.add_script_tag would be.

    from a11y import audit
    problems = audit(page, "worklist")   # [] when the page is clean

Run directly, it tests itself: two small pages served on a loopback port
with the service's own CSP, one with a low-contrast text and an <img>
without alt (must fail), one clean (must pass), in headless /usr/bin/chromium.
"""

import sys

from axe_playwright_python.sync_playwright import Axe

# WCAG 2.0 and 2.1, levels A and AA (add "wcag22aa" for WCAG 2.2's new AA rules).
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
OPTIONS = {"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}

_axe = Axe()  # reads the bundled axe.min.js once


def _target(t):
    # A node's target is a CSS selector, or a list of them through iframes/shadow roots.
    return " >> ".join(t) if isinstance(t, list) else t


def audit(page, label):
    """Run axe's WCAG 2 A/AA rules on `page` as it is now; one line per violation:
    "rule-id (impact): selector1, selector2 — summary"."""
    violations = _axe.run(page, options=OPTIONS).response["violations"]
    out = []
    for v in violations:
        nodes = v["nodes"]
        where = ", ".join(_target(t) for n in nodes[:5] for t in n["target"])
        if len(nodes) > 5:
            where += f", … (+{len(nodes) - 5})"
        # failureSummary is "Fix any of the following:\n  <reason>\n..."; keep the first reason.
        lines = [s.strip() for s in (nodes[0].get("failureSummary") or "").splitlines()] if nodes else []
        reason = lines[1] if len(lines) > 1 else v["help"]
        out.append(f"{v['id']} ({v['impact']}): {where} — {reason}")
    print(f"a11y {label}: {len(out)} WCAG 2 A/AA violation(s)")
    return out


if __name__ == "__main__":
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from playwright.sync_api import sync_playwright

    # The service's CSP (crates/web/src/server.rs), so inline script and style are refused.
    CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
           "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
           "form-action 'self'; base-uri 'none'")
    PIXEL = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c"
                          "00000000010001000002024401003b")  # 1x1 GIF
    HEAD = ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<title>%s</title><link rel="stylesheet" href="/s.css"></head><body><main>')
    FILES = {
        "/s.css": ("text/css", b"body{color:#000;background:#fff}.faint{color:#ccc}"),
        "/x.gif": ("image/gif", PIXEL),
        # Bad: #ccc on white (1.6:1) and an image without alt; the inline script proves CSP bites.
        "/bad": ("text/html", (HEAD % "Bad" + '<h1>Bad</h1><p class="faint">Hard to read</p>'
                               '<img src="/x.gif"><script>window.inlineRan = 1</script>'
                               '</main></body></html>').encode()),
        "/good": ("text/html", (HEAD % "Good" + '<h1>Good</h1><p>Easy to read</p>'
                                '<img src="/x.gif" alt="A dot"></main></body></html>').encode()),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            ctype, body = FILES.get(self.path, ("text/plain", b"not found"))
            self.send_response(200 if self.path in FILES else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: a free one
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    failed = False
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()

        page.goto(f"{base}/bad")
        csp = page.evaluate("window.inlineRan") is None
        print(f"{'ok' if csp else 'FAIL'}: the CSP blocks inline script on the test page")
        bad = audit(page, "bad page")
        for s in bad:
            print("  " + s)
        found = {s.split(" ", 1)[0] for s in bad}
        want = {"color-contrast", "image-alt"}
        ok = want <= found
        print(f"{'ok' if ok else 'FAIL'}: the bad page has {sorted(want)} (found {sorted(found)})")
        failed |= not (ok and csp)

        page.goto(f"{base}/good")
        good = audit(page, "clean page")
        for s in good:
            print("  " + s)
        print(f"{'ok' if not good else 'FAIL'}: the clean page has no violation")
        failed |= bool(good)

        browser.close()
    server.shutdown()
    sys.exit(1 if failed else 0)
