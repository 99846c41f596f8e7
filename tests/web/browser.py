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
 - a browser signs in at the hospital's OpenID provider (--idp, the PyPI
   package oidc-provider-mock) and comes back signed in with the roles of
   its token; a user the provider gives no role is refused the worklist;
 - the admin (from the provider) reaches the audit trail; a reader gets 403;
 - the campaign page (--campaign) shows progress, histograms with the
   operating points and ROC curves, in both languages;
 - an axe-core WCAG 2 A/AA audit of every page finds nothing;
 - screenshots of the worklist, study, campaign and audit pages go to --out.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from a11y import audit  # noqa: E402

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


def accessible(page, label):
    """An axe-core WCAG 2.0/2.1 A/AA audit of the page as it is now."""
    violations = audit(page, label)
    check(violations == [], f"no WCAG A/AA violation on the {label} {violations[:3]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--web", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--critical", required=True, type=Path)
    ap.add_argument("--routine", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--idp", required=True, help="the OpenID provider's issuer URL")
    ap.add_argument("--campaign", required=True, help="a scored, evaluated campaign's name")
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
        accessible(page, "sign-in page")
        sign_in(page, web, "lan", "wrong password")
        check("error=1" in page.url, "a wrong password is refused")
        check(page.locator("#login-error").is_visible(), "with a message")
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
        accessible(page, "worklist")
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
        accessible(other, "study page")
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

        # The campaign page: progress, the report's figures, in both languages.
        page.goto(f"{web}/campaigns?c={a.campaign}")
        page.wait_for_selector("#campaign-findings svg.chart")
        check(a.campaign in page.locator("#campaigns-body").inner_text(), "the campaign is listed")
        check(page.locator("#campaign-progress").get_attribute("value")
              == page.locator("#campaign-progress").get_attribute("max"),
              "its progress is complete")
        hists = page.locator("#campaign-findings svg.chart:not(.chart-roc)")
        check(hists.count() >= 1, f"a score histogram per finding ({hists.count()})")
        check(hists.first.locator("rect.hist-bar").count() == 20, "with 20 bins")
        check(page.locator("#campaign-findings line.op-line").count() >= 1,
              "and the operating points marked")
        check(page.locator("#campaign-findings polyline.roc-line").count() == hists.count(),
              "a ROC curve per finding (the campaign was evaluated)")
        check(page.locator("#campaign-priorities tr").count() == 4, "images by priority")
        page.screenshot(path=str(a.out / "campaign-en.png"), full_page=True)
        accessible(page, "campaign page")
        vpage.goto(f"{web}/campaigns?c={a.campaign}")
        vpage.wait_for_selector("#campaign-findings svg.chart")
        untranslated = vpage.evaluate(untranslated_js)
        check(untranslated == [], f"no untranslated string on the Vietnamese campaign page {untranslated[:5]}")
        vpage.screenshot(path=str(a.out / "campaign-vi.png"), full_page=True)

        # A reader cannot reach the admin pages.
        r = page.goto(f"{web}/admin")
        check(r.status == 403, f"a reader is refused the audit trail ({r.status})")

        # Sign-in at the hospital's OpenID provider (authorization code +
        # PKCE): Dr Minh, reader and admin there.
        sso = browser.new_context(locale="en-GB", viewport={"width": 1400, "height": 900})
        # The provider's own page links a stylesheet from a CDN; offline here.
        sso.route("https://cdn.jsdelivr.net/**", lambda r: r.abort())
        spage = sso.new_page()
        spage.goto(f"{web}/campaigns")
        spage.wait_for_url("**/login**")
        spage.click("#oidc-link")
        spage.wait_for_url(f"{a.idp}/**")
        spage.get_by_role("button", name="dr.minh").click()
        spage.wait_for_url(f"{web}/campaigns")
        spage.wait_for_selector("#user-name:not(:empty)")
        check(spage.locator("#user-name").inner_text() == "dr.minh",
              "signed in at the provider, back where they were going")
        check(spage.locator("#nav-admin").is_visible(), "an admin sees the audit trail link")
        spage.click("#nav-admin")
        spage.wait_for_selector("#audit-body tr")
        text = spage.locator("#audit-body").inner_text()
        check("WebSignIn" in text and "web/oidc" in text, "the sign-in is in the audit trail")
        check("intact" in spage.locator("#audit-chain").inner_text(), "and the hash chain holds")
        spage.screenshot(path=str(a.out / "audit-en.png"), full_page=True)
        accessible(spage, "audit trail")
        sso.close()

        # A user the provider gives no role signs in but may not read.
        nobody = browser.new_context(locale="en-GB")
        nobody.route("https://cdn.jsdelivr.net/**", lambda r: r.abort())
        npage = nobody.new_page()
        npage.goto(f"{web}/login")
        npage.click("#oidc-link")
        npage.wait_for_url(f"{a.idp}/**")
        npage.get_by_placeholder("sub").fill("bob")
        npage.get_by_role("button", name="Authorize", exact=True).click()
        npage.wait_for_url(f"{web}/")
        r = npage.request.get(f"{web}/api/worklist")
        check(r.status == 403, f"a user without a role is refused the worklist ({r.status})")
        # A callback nobody started is refused.
        npage.goto(f"{web}/oidc/callback?code=x&state=forged")
        check("error=oidc" in npage.url, "a forged callback is refused")
        nobody.close()

        browser.close()
    print("browser: all checks passed")


if __name__ == "__main__":
    main()
