"""Signing in and out, and what anonymous visitors get."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

from system_tests.conftest import OPERATOR_PASSWORD, Product, Session, sign_in


def test_a_browser_at_root_is_sent_to_sign_in_then_sees_the_overview(anonymous: Session) -> None:
    page = anonymous.page
    page.goto("/")
    assert "/accounts/login/" in page.url
    sign_in(page, "operator", OPERATOR_PASSWORD)
    assert page.url.endswith("/")
    assert page.get_by_role("heading", name="Overview").is_visible()
    assert page.locator("[data-live-status]").text_content() in ("Live", "Connecting…")
    assert not anonymous.errors, anonymous.errors


def test_a_wrong_password_is_refused_with_a_message(anonymous: Session) -> None:
    page = anonymous.page
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill("operator")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    assert "/accounts/login/" in page.url
    assert page.get_by_role("alert").is_visible()


def test_sign_out_ends_the_session(signed_in: Callable[..., Session]) -> None:
    session = signed_in()
    page = session.page
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/accounts/login/")
    page.goto("/")
    assert "/accounts/login/" in page.url


def test_an_api_client_at_root_still_gets_the_json_description(product: Product) -> None:
    request = urllib.request.Request(product.url + "/", headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"] == "application/json"
        assert b'"name": "Energy Dashboard"' in response.read().replace(b'":"', b'": "')
