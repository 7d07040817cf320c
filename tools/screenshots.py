"""`make screenshots`: the pages with the demo building, as PNGs in docs/screenshots/.

Starts `manage.py run --demo` in a throw-away folder exactly as the browser tests do
(system_tests/conftest.py's `running_product`), signs in as the demo operator in Debian's
Chromium (Playwright), and takes: each page at 1440x900 in the light theme; the overview in
the dark theme and on a 375-px phone; the overview (light) and a room (dark) in kiosk mode at
1920x1080. A page whose route is not in the URL conf yet (or whose object the demo lacks) is
skipped with a note.

Usage: python tools/screenshots.py [--out docs/screenshots] [--only overview,room]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BASE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE))

from playwright.sync_api import Page, ViewportSize, sync_playwright  # noqa: E402

from system_tests.conftest import (  # noqa: E402
    OPERATOR_PASSWORD,
    Product,
    launch_chromium,
    new_session,
    running_product,
    sign_in,
)

DESKTOP: ViewportSize = {"width": 1440, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 812}
WALL: ViewportSize = {"width": 1920, "height": 1080}


@dataclass(frozen=True)
class Shot:
    """One PNG: `page` is a key of the paths found (see `paths`)."""

    file: str
    page: str
    viewport: ViewportSize
    theme: str = "light"
    kiosk: bool = False


SHOTS = [
    Shot("overview.png", "overview", DESKTOP),
    Shot("overview-dark.png", "overview", DESKTOP, theme="dark"),
    Shot("overview-phone.png", "overview", PHONE),
    Shot("overview-kiosk.png", "overview", WALL, kiosk=True),
    Shot("room.png", "room", DESKTOP),
    Shot("room-kiosk.png", "room", WALL, theme="dark", kiosk=True),
    Shot("demand-response.png", "demand-response", DESKTOP),
    Shot("ingestion.png", "ingestion", DESKTOP),
]


def paths(product: Product) -> dict[str, str | None]:
    """Where each page is in this product (None: not there yet)."""
    status, rooms = product.request("GET", "/api/v1/rooms/names")
    room = rooms[0] if status == 200 and rooms else None
    found = product.reverse(
        "service-root", "page-demand-response", "page-ingestion", *([("page-room", room)] if room else [])
    )
    return {
        "overview": found["service-root"],
        "room": found.get("page-room"),
        "demand-response": found["page-demand-response"],
        "ingestion": found["page-ingestion"],
    }


def settle(page: Page) -> None:
    """Wait until the page is as a person sees it: loaded, live badge connected, charts drawn."""
    page.wait_for_load_state("networkidle")
    if page.locator("[data-live-status]").count():
        page.wait_for_function(
            "() => document.querySelector('[data-live-status]').dataset.state === 'live'", timeout=20000
        )
    time.sleep(1.0)  # the charts' first coalesced repaint (lib/charts.js) and web fonts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BASE / "docs" / "screenshots")
    parser.add_argument("--only", default="", help="Comma-separated pages (overview, room, ...).")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    args.out.mkdir(parents=True, exist_ok=True)
    taken = 0
    with tempfile.TemporaryDirectory(prefix="ed-screenshots-") as folder:
        print("starting manage.py run --demo ...", flush=True)
        with running_product(Path(folder)) as product, sync_playwright() as playwright:
            where = paths(product)
            browser = launch_chromium(playwright)
            try:
                for shot in SHOTS:
                    if only and shot.page not in only:
                        continue
                    path = where.get(shot.page)
                    if not path:
                        print(f"skipped {shot.file}: the {shot.page} page is not in this product yet")
                        continue
                    session = new_session(browser, product, viewport=shot.viewport, theme=shot.theme)
                    try:
                        sign_in(session.page, "operator", OPERATOR_PASSWORD)
                        session.page.goto(path + ("?kiosk=1" if shot.kiosk else ""))
                        settle(session.page)
                        target = args.out / shot.file
                        session.page.screenshot(path=str(target))
                        taken += 1
                        print(f"wrote {target.relative_to(BASE) if target.is_relative_to(BASE) else target}")
                        if session.errors:
                            print(f"  the page reported errors: {session.errors}")
                    finally:
                        session.context.close()
            finally:
                browser.close()
    print(f"{taken} screenshots in {args.out}")
    return 0 if taken else 1


if __name__ == "__main__":
    raise SystemExit(main())
