"""Open the built documentation site in headless Chromium and take a screenshot of the landing page,
a guide and an API page, failing on any console error or failed request.

    .venv/bin/mkdocs build --strict                   # into build/site
    .venv/bin/python scripts/docs_screenshots.py      # -> docs/screenshots/*.png

Needs the `[docs]` extra (Playwright's Python package) and a Chromium: Debian's `chromium` package
(`/usr/bin/chromium`) is used where present, else Playwright's own (`playwright install chromium`).
The site is served from `build/site` on a local port, as a browser would see it deployed.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = {  # screenshot name: path in the site
    "landing": "",
    "guide_finetune": "guides/finetune/",
    "api_export": "api/export/",
}
# what Debian's Chromium needs headless as root on a machine without a network
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """Serve ``site`` on a free local port in a background thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--site", default=str(REPO / "build" / "site"))
    p.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    p.add_argument("--chromium", default=shutil.which("chromium") or "", help="a Chromium binary")
    args = p.parse_args()
    site, out = Path(args.site), Path(args.out)
    if not (site / "index.html").is_file():
        raise SystemExit(f"docs_screenshots: no built site at {site}; run `mkdocs build --strict` first")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("docs_screenshots: needs Playwright: pip install '.[docs]'") from None
    out.mkdir(parents=True, exist_ok=True)
    server = serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium or None, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
        for name, path in PAGES.items():
            before = len(problems)
            page.goto(base + path, wait_until="networkidle")
            title = page.title()
            page.screenshot(path=str(out / f"{name}.png"))
            status = "ok" if len(problems) == before else f"{len(problems) - before} problem(s)"
            print(f"{name:16s} {base + path:48s} {title!r}: {status}")
        browser.close()
    server.shutdown()
    for line in problems:
        print(line, file=sys.stderr)
    print(f"screenshots in {out}; {len(problems)} console errors or failed requests")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
