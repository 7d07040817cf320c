"""The ingestion page in a browser: a corrupt meter file uploaded (chosen, or dropped on the
form) shows its errors with their line numbers; a viewer sees no scan, upload or re-process
control, and a POST forged with a valid CSRF token is refused."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from system_tests.conftest import BASE, Product, Session

SAMPLE = BASE / "ingestion" / "tests" / "data" / "sample_day.slg_v2"


def corrupt_sample() -> bytes:
    """The sample day (docs/formats/slg_v2.md) with two bad detail lines: line 2's reading
    type is Q, line 4's time is 2460."""
    lines = SAMPLE.read_bytes().split(b"\n")
    lines[1] = lines[1][:44] + b"Q" + lines[1][45:]
    lines[3] = lines[3][:30] + b"2460" + lines[3][34:]
    return b"\n".join(lines)


def _assert_errors_shown(page: Any, name: str) -> None:
    page.wait_for_url(re.compile(r"/ingestion/files/\d+/"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    expect(page.locator("[data-file-status]")).to_have_text("rejected")
    expect(page.locator(".messages")).to_contain_text(f"{name}: rejected.")
    rows = page.locator("[data-errors] tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("2")
    expect(rows.nth(0)).to_contain_text("reading_type")
    expect(rows.nth(1)).to_contain_text("4")
    expect(rows.nth(1)).to_contain_text("2460")
    assert [rows.nth(i).get_attribute("data-error-line") for i in range(2)] == ["2", "4"]


def test_uploading_a_corrupt_meter_file_shows_its_errors_with_line_numbers(
    signed_in: Any, tmp_path: Path
) -> None:
    session: Session = signed_in()
    page = session.page
    page.goto("/ingestion/")
    path = tmp_path / "bt-corrupt.slg_v2"
    path.write_bytes(corrupt_sample())
    page.get_by_label("Meter file (SLG v2)").set_input_files(str(path))
    expect(page.locator("[data-chosen]")).to_contain_text("bt-corrupt.slg_v2")
    page.get_by_role("button", name="Upload and import").click()
    _assert_errors_shown(page, "bt-corrupt.slg_v2")
    # The ledger lists it as rejected, with its error count.
    page.get_by_role("link", name="← Ingestion").click()
    row = page.locator("tr", has=page.get_by_role("link", name="bt-corrupt.slg_v2", exact=True)).first
    expect(row.locator("[data-status]")).to_have_text("rejected")
    assert not session.errors, session.errors
    assert not session.csp_violations, session.csp_violations


def test_a_file_dropped_on_the_form_is_uploaded(signed_in: Any) -> None:
    session: Session = signed_in()
    page = session.page
    page.goto("/ingestion/")
    content = base64.b64encode(corrupt_sample()).decode()
    page.evaluate(
        """([name, content]) => {
            const bytes = Uint8Array.from(atob(content), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name));
            const zone = document.querySelector("[data-drop]");
            zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        ["bt-dropped.slg_v2", content],
    )
    expect(page.locator("[data-chosen]")).to_contain_text("bt-dropped.slg_v2")
    page.get_by_role("button", name="Upload and import").click()
    _assert_errors_shown(page, "bt-dropped.slg_v2")
    assert not session.errors, session.errors


def test_a_viewer_sees_no_scan_upload_or_reprocess_control_and_a_forged_post_is_refused(
    product: Product, signed_in: Any
) -> None:
    session: Session = signed_in("viewer")
    page = session.page
    page.goto("/ingestion/")
    expect(page.get_by_role("heading", name="Files")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Scan now|Upload|Re-process|Accept"))).to_have_count(0)
    expect(page.locator('input[type="file"]')).to_have_count(0)
    token = next(c["value"] for c in session.context.cookies() if c["name"] == "csrftoken")
    before = product.request("GET", "/api/v1/ingestion/files/")[1]["count"]
    response = page.request.post(
        "/ingestion/upload",
        multipart={
            "csrfmiddlewaretoken": token,
            "file": {"name": "bt-forged.slg_v2", "mimeType": "text/plain", "buffer": SAMPLE.read_bytes()},
        },
        headers={"Accept": "text/html"},
    )
    assert response.status == 403
    assert "Only operators scan sources" in response.text()
    assert product.request("GET", "/api/v1/ingestion/files/")[1]["count"] == before


def test_a_file_imported_elsewhere_reaches_the_open_ledger_live(product: Product, signed_in: Any) -> None:
    session: Session = signed_in()
    page = session.page
    page.goto("/ingestion/")
    page.wait_for_selector('[data-live-status][data-state="live"]')
    boundary = "bt-live-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="bt-live.slg_v2"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + corrupt_sample()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, answer = product.request(
        "POST",
        "/api/v1/ingestion/upload",
        raw=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 201, answer
    row = page.locator(f'[data-file="{answer["id"]}"]')
    expect(row.locator("[data-status]")).to_have_text("rejected", timeout=5000)
    expect(row).to_contain_text("bt-live.slg_v2")
    assert not session.errors, session.errors
