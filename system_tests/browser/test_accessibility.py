"""axe-core (npm, node_modules/axe-core) on every page, in both themes: no serious or critical
violation.

The pages are the URL names the product has (sign-in, the overview, and those that the URL
conf holds: the room page, sensors, demand response, ingestion), reversed by the product itself,
so a page joins this test the moment its route is merged. The test says which names it did
not find (printed, and in the assertion's message when nothing else fails), never passes by
checking nothing: sign-in and the overview are always there. axe is injected as a script of
the test's own, which the pages' Content-Security-Policy (scripts from the product's origin
only) would refuse: the contexts bypass the CSP for that, and the other browser tests check
the CSP itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from system_tests.conftest import BASE, Product, Session

AXE = BASE / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
# (URL name, arguments): ROOM, EVENT and FILE stand for a room, a DR event and a meter file
# of the demo building.
ROOM, EVENT, FILE = "<room>", "<event>", "<file>"
PAGES: list[tuple[str, tuple[str, ...]]] = [
    ("service-root", ()),
    ("page-room", (ROOM,)),
    ("page-sensors", ()),
    ("page-demand-response", ()),
    ("page-dr-event", (EVENT,)),
    ("page-ingestion", ()),
    ("page-ingestion-file", (FILE,)),
]
# These also have a kiosk view (?kiosk=1).
KIOSK = ("service-root", "page-room")


def _first(product: Product, path: str, key: str) -> str | None:
    """The first item's `key` at `path` (the API), None when the demo has none."""
    status, body = product.request("GET", path)
    assert status == 200, (path, body)
    items = body["results"] if isinstance(body, dict) else body
    return str(items[0] if isinstance(items[0], str) else items[0][key]) if items else None


@pytest.fixture(scope="module")
def page_paths(product: Product) -> dict[str, str | None]:
    values = {
        ROOM: _first(product, "/api/v1/rooms/names", ""),
        EVENT: _first(product, "/api/v1/demand-response/events", "id"),
        FILE: _first(product, "/api/v1/ingestion/files", "id"),
    }
    assert values[ROOM], "the demo building has no room"
    # A page whose object the demo lacks (no DR event yet, say) is reported missing, like a
    # page whose route is not merged yet.
    known = [(name, args) for name, args in PAGES if all(values[a] for a in args)]
    found = product.reverse(
        *((name, *(str(values[a]) for a in args)) if args else name for name, args in known)
    )
    return {name: found.get(name) for name, _ in PAGES}


def _axe(page: Page) -> list[dict[str, Any]]:
    """The violations axe finds on the page as it is now (any impact)."""
    assert Path(AXE).is_file(), f"{AXE} is missing: run make assets (npm ci)"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
          const r = await axe.run(document, { resultTypes: ["violations"] });
          return r.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + " :: " + n.failureSummary),
          }));
        }"""
    )
    return list(result)


def _settle(page: Page) -> None:
    page.wait_for_load_state("load")
    # Pages with a live badge: wait until it has connected, so that what axe reads is the page
    # as a person sees it (charts drawn, badge in words).
    status = page.locator("[data-live-status]")
    if status.count():
        page.wait_for_function(
            "() => document.querySelector('[data-live-status]').dataset.state !== 'connecting'",
            timeout=15000,
        )


def _report(found: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for where, violations in found.items():
        for v in violations:
            lines.append(f"{where}: [{v['impact']}] {v['id']}: {v['help']}")
            lines.extend(f"    {node}" for node in v["nodes"])
    return "\n".join(lines)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_no_page_has_a_serious_or_critical_violation(
    theme: str,
    product: Product,
    page_paths: dict[str, str | None],
    signed_in: Callable[..., Session],
    anonymous_with: Callable[..., Session],
) -> None:
    found: dict[str, list[dict[str, Any]]] = {}
    checked: list[str] = []

    anonymous = anonymous_with(theme=theme, bypass_csp=True)
    anonymous.page.goto("/accounts/login/")
    _settle(anonymous.page)
    found["sign-in"] = _axe(anonymous.page)
    checked.append("/accounts/login/")

    for viewport in ({"width": 1366, "height": 900}, {"width": 375, "height": 812}):
        session = signed_in(theme=theme, bypass_csp=True, viewport=viewport)
        page = session.page
        for name, path in page_paths.items():
            if not path:
                continue
            for url in (path, f"{path}?kiosk=1") if name in KIOSK else (path,):
                page.goto(url)
                _settle(page)
                found[f"{url} ({viewport['width']} px, {theme})"] = _axe(page)
                checked.append(url)
        assert not session.errors, session.errors

    missing = [name for name, path in page_paths.items() if not path]
    print(
        f"axe checked {len(checked)} page views in the {theme} theme; not checked (no route yet, or the demo has no such object): {missing or 'none'}"
    )
    assert page_paths["service-root"], "the overview must always be checked"
    # The lesser ones are printed for whoever looks (pytest -s), not failed on.
    lesser = {where: [v for v in vs if v["impact"] not in BLOCKING] for where, vs in found.items()}
    if any(lesser.values()):
        print(_report({where: v for where, v in lesser.items() if v}))
    found = {where: [v for v in vs if v["impact"] in BLOCKING] for where, vs in found.items()}
    found = {where: v for where, v in found.items() if v}
    assert not found, _report(found) + (
        f"\n(not checked: no route yet, or no such object in the demo: {', '.join(missing)})"
        if missing
        else ""
    )
