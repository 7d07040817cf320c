"""Errors answer a browser on a page with the product's error page, and everyone else (the
API, API clients, /health) with the JSON body they always had."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client, RequestFactory

from energy_dashboard.core import exceptions

pytestmark = pytest.mark.django_db(databases="__all__")

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _request(path: str, accept: str) -> Any:
    request = RequestFactory().get(path, HTTP_ACCEPT=accept)
    request.user = AnonymousUser()
    return request


@pytest.mark.parametrize(
    ("path", "accept", "page"),
    [
        ("/no-such-page/", BROWSER, True),
        ("/no-such-page/", "application/json", False),
        ("/no-such-page/", "*/*", False),
        ("/no-such-page/", "", False),
        ("/api/v1/no-such-thing", BROWSER, False),
        ("/health", BROWSER, False),
    ],
)
def test_who_gets_a_page(path: str, accept: str, page: bool) -> None:
    assert exceptions.wants_page(_request(path, accept)) is page


def test_a_browser_on_an_unknown_page_gets_the_layouts_404(client: Client, operator: User) -> None:
    client.force_login(operator)
    response = client.get("/no-such-page/", HTTP_ACCEPT=BROWSER)
    html = response.content.decode()
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    assert '<h1 id="error-title">Page not found</h1>' in html and "Nothing at /no-such-page/." in html
    assert 'aria-label="Main"' in html  # the navigation of a signed-in user
    api = client.get("/api/v1/no-such-thing", HTTP_ACCEPT=BROWSER)
    assert api.status_code == 404 and api.json()["code"] == "not_found"


def test_an_anonymous_browser_gets_the_page_without_navigation(client: Client) -> None:
    response = client.get("/no-such-page/", HTTP_ACCEPT=BROWSER)
    assert response.status_code == 404 and "Page not found" in response.content.decode()
    assert 'aria-label="Main"' not in response.content.decode()


def test_a_500_is_a_page_for_a_browser_and_json_for_the_api() -> None:
    page = exceptions.server_error(_request("/rooms/x/", BROWSER))
    assert page.status_code == 500 and "Something went wrong" in page.content.decode()
    assert "Internal error; it has been logged." in page.content.decode()
    api = exceptions.server_error(_request("/api/v1/rooms/", BROWSER))
    assert api.status_code == 500 and api["Content-Type"] == "application/json"


def test_when_the_layout_itself_fails_the_error_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # The database or the session may be what failed: the layout cannot be drawn then.
    from energy_dashboard.core import web

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(web, "render_page", broken)
    response = exceptions.server_error(_request("/rooms/x/", BROWSER))
    assert response.status_code == 500 and response["Content-Type"] == "application/json"


def test_403_and_a_failed_csrf_check(client: Client, operator: User) -> None:
    denied = exceptions.permission_denied(_request("/ingestion/", BROWSER))
    assert denied.status_code == 403 and "Not allowed" in denied.content.decode()
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(operator)
    page = csrf_client.post("/accounts/logout/", HTTP_ACCEPT=BROWSER)
    assert page.status_code == 403 and "security token" in page.content.decode()
    api = csrf_client.post("/accounts/logout/", HTTP_ACCEPT="application/json")
    assert api.status_code == 403 and api.json()["code"] == "csrf_failed"
