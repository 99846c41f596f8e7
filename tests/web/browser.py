#!/usr/bin/env python3
"""The web worklist in a real browser: headless Chromium (Debian's) driven
by Playwright against a running `cxr-triage serve`, as a radiologist uses
it. Run by tests/service/web.rs, which starts the service with two local
users (`lan`, reader; `khoa`, reader; `upl`, uploader only) and makes the
films.

    browser.py --web http://127.0.0.1:PORT --grpc 127.0.0.1:PORT \
        --critical FILE.dcm --routine FILE.dcm --out DIR

Checks, each an assertion (exit 1 with the reason on the first failure):
 - an anonymous browser is sent to sign in; a wrong password is refused;
 - an uploader-only user cannot open the worklist;
 - a CRITICAL film sent by gRPC appears at the top of an open worklist
   within 2 s, without a reload, with the alert;
 - a claim made in one browser (keyboard: j, c) shows in a second
   browser's study page without a reload;
 - the study page's heatmap overlay toggles, and the opacity applies;
 - the Vietnamese page has no untranslated string and no missing key;
 - screenshots of the worklist and study pages, in English and in
   Vietnamese, go to --out.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def check(condition, why):
    if not condition:
        print(f"FAIL: {why}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {why}")


def send(grpc, path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples/python/triage_client.py"), "--server", grpc,
         "--json", str(path)],
        capture_output=True, text=True, timeout=120)
    check(out.returncode == 0, f"the film {path.name} was analysed by gRPC ({out.stderr[-300:]})")


def sign_in(page, web, user, password):
    page.goto(f"{web}/")
    page.wait_for_url("**/login**")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("#login-form button[type=submit]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--web", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--critical", required=True, type=Path)
    ap.add_argument("--routine", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    web = a.web.rstrip("/")

    send(a.grpc, a.routine)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

        # Anonymous: sent to sign in, and the API says 401.
        anon = browser.new_context(locale="en-GB")
        page = anon.new_page()
        page.goto(f"{web}/")
        check("/login" in page.url, f"an anonymous browser is sent to sign in ({page.url})")
        r = page.request.get(f"{web}/api/worklist")
        check(r.status == 401, f"the API refuses an anonymous call ({r.status})")
        sign_in(page, web, "lan", "wrong password")
        check("error=1" in page.url, "a wrong password is refused")
        anon.close()

        # An uploader (a modality's account) cannot read the worklist.
        upl = browser.new_context(locale="en-GB")
        page = upl.new_page()
        sign_in(page, web, "upl", "upload-only")
        r = page.request.get(f"{web}/api/worklist")
        check(r.status == 403, f"an uploader-only user cannot read the worklist ({r.status})")
        upl.close()

        # Dr Lan's worklist, open; the CRITICAL film arrives.
        lan = browser.new_context(locale="en-GB", viewport={"width": 1400, "height": 900})
        page = lan.new_page()
        sign_in(page, web, "lan", "Phổi-khỏe-2026")
        page.wait_for_url(f"{web}/")
        page.wait_for_selector("#worklist tr[data-uid]")
        before = page.locator("#worklist tr[data-uid]").count()
        check(before >= 1, f"the worklist lists the routine study ({before})")
        page.wait_for_timeout(500)  # the live stream is connected
        started = time.monotonic()
        send(a.grpc, a.critical)
        sent = time.monotonic()
        page.wait_for_selector("#worklist tr[data-uid][data-priority=CRITICAL]", timeout=10_000)
        seen = time.monotonic()
        first = page.locator("#worklist tr[data-uid]").first
        check(first.get_attribute("data-priority") == "CRITICAL",
              "the CRITICAL study is at the top")
        check(seen - sent < 2.0,
              f"it appeared {seen - sent:.2f} s after the analysis answered, without a reload "
              f"({sent - started:.2f} s to analyse)")
        check(page.locator("#critical-alert").is_visible(), "with the new-CRITICAL alert")
        page.screenshot(path=str(a.out / "worklist-en.png"), full_page=True)
        critical_uid = first.get_attribute("data-uid")

        # Dr Khoa has the same study open in another browser.
        khoa = browser.new_context(locale="en-GB", viewport={"width": 1400, "height": 1000})
        other = khoa.new_page()
        sign_in(other, web, "khoa", "Nốt-phổi-2026")
        other.wait_for_url(f"{web}/")
        other.goto(f"{web}/study/{critical_uid}")
        other.wait_for_selector("#study-status")
        check(other.locator("#study-status").get_attribute("data-status") == "NEW",
              "the second browser sees the study as NEW")

        # Dr Lan claims it from the keyboard.
        page.keyboard.press("j")
        page.keyboard.press("c")
        other.locator("#study-status[data-status=CLAIMED]").wait_for(timeout=5_000)
        check("lan" in other.locator("#study-status").inner_text(),
              "the claim made in the first browser shows in the second, with who holds it")

        # The heatmap overlay toggles.
        other.wait_for_selector("canvas.heatmap")
        canvas = other.locator("canvas.heatmap").first
        toggle = other.locator(".heatmap-toggle").first
        if not toggle.is_checked():
            toggle.check()
        other.wait_for_timeout(300)
        check(canvas.is_visible(), "the heatmap overlay is shown")
        other.locator(".heatmap-opacity").first.fill("80")
        other.locator(".heatmap-opacity").first.dispatch_event("input")
        opacity = other.evaluate("getComputedStyle(document.querySelector('canvas.heatmap')).opacity")
        check(abs(float(opacity) - 0.8) < 0.02, f"the opacity slider applies ({opacity})")
        other.screenshot(path=str(a.out / "study-en.png"), full_page=True)
        toggle.uncheck()
        other.wait_for_timeout(300)
        check(not canvas.is_visible(), "and hidden again")

        # Vietnamese: every string translated, no key missing.
        vi = browser.new_context(locale="vi-VN", viewport={"width": 1400, "height": 900})
        vpage = vi.new_page()
        errors = []
        vpage.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        sign_in(vpage, web, "lan", "Phổi-khỏe-2026")
        vpage.wait_for_url(f"{web}/")
        vpage.wait_for_selector("#worklist tr[data-uid]")
        check(vpage.evaluate("document.documentElement.lang") == "vi",
              "a Vietnamese browser gets the Vietnamese page")
        untranslated_js = """() => {
            const en = window.I18N.en, vi = window.I18N.vi, bad = [];
            for (const k of Object.keys(en)) if (!(k in vi)) bad.push('missing vi: ' + k);
            for (const el of document.querySelectorAll('[data-i18n]')) {
                if (!(el.dataset.i18n in vi)) bad.push('no key: ' + el.dataset.i18n);
            }
            // Any text on the page that is an English string of the
            // dictionary (one whose Vietnamese differs) was left untranslated.
            const english = new Set(Object.keys(en).filter(k => en[k] !== vi[k])
                .map(k => en[k].trim()).filter(t => t.length > 1));
            for (const el of document.querySelectorAll('body *')) {
                if (el.closest('[lang=en]')) continue;  // the "English" switch itself
                for (const n of el.childNodes) {
                    const t = n.nodeType === 3 ? n.textContent.trim() : '';
                    if (t && english.has(t)) bad.push('english: ' + t);
                }
                for (const a of ['placeholder', 'title', 'aria-label']) {
                    const v = el.getAttribute(a);
                    if (v && english.has(v.trim())) bad.push('english ' + a + ': ' + v);
                }
            }
            return bad;
        }"""
        untranslated = vpage.evaluate(untranslated_js)
        check(untranslated == [], f"no untranslated string in Vietnamese {untranslated[:5]}")
        check(not [e for e in errors if "missing" in e.lower()], f"no missing key logged {errors[:3]}")
        vpage.screenshot(path=str(a.out / "worklist-vi.png"), full_page=True)
        vpage.goto(f"{web}/study/{critical_uid}")
        vpage.wait_for_selector("#study-status")
        vpage.wait_for_timeout(500)
        untranslated = vpage.evaluate(untranslated_js)
        check(untranslated == [], f"no untranslated string on the Vietnamese study page {untranslated[:5]}")
        vpage.screenshot(path=str(a.out / "study-vi.png"), full_page=True)

        browser.close()
    print("browser: all checks passed")


if __name__ == "__main__":
    main()
