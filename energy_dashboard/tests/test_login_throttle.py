"""The login throttle counts the real client, whatever X-Forwarded-For it sends (issue 12, point 1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from energy_dashboard.core.redis import redis_client

pytestmark = pytest.mark.django_db(databases="__all__")

TOKEN_URL = "/api/v1/auth/token/"
# Addresses from the documentation ranges (RFC 5737, RFC 3849): only ever strings in REMOTE_ADDR.
CLIENT = "203.0.113.7"
OTHER_CLIENT = "203.0.113.8"
PROXY = "192.0.2.10"


def _rate_limit() -> int:
    """Requests per period the login scope allows (LOGIN_THROTTLE_RATE, e.g. "20/min")."""
    return int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["login"].split("/")[0])


def _clear_login_throttle() -> None:
    client = redis_client()
    for key in client.scan_iter(match="*throttle_login_*"):
        client.delete(key)


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    # The throttle counts in Redis, which outlives each test's database transaction.
    _clear_login_throttle()
    yield
    _clear_login_throttle()


@pytest.fixture(autouse=True)
def _no_lockout(settings: Any) -> None:
    # These tests cross the per-address throttle; the per-username lockout has its own tests.
    settings.AXES_FAILURE_LIMIT = 1000


def _login(api: APIClient, username: str, password: str, remote_addr: str, forwarded: str | None) -> Any:
    extra: dict[str, Any] = {"REMOTE_ADDR": remote_addr}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return api.post(TOKEN_URL, {"username": username, "password": password}, format="json", **extra)


def test_a_forged_forwarded_for_does_not_dodge_the_login_throttle(api: APIClient, operator: User) -> None:
    # No proxy is configured: X-Forwarded-For is the client's own words, and a new value on
    # every request used to make every request a new client.
    limit = _rate_limit()
    codes = [
        _login(api, f"guess-{n}", "wrong", CLIENT, f"198.51.100.{n}").status_code for n in range(limit + 5)
    ]
    assert codes == [400] * limit + [429] * 5
    right = _login(api, "op", "pw-for-tests-1", CLIENT, "198.51.100.250")
    assert right.status_code == 429
    assert right.json()["code"] == "throttled"
    assert "Retry-After" in right
    # Another address is another client.
    assert _login(api, "op", "pw-for-tests-1", OTHER_CLIENT, None).status_code == 200


@override_settings(TRUSTED_PROXIES=[PROXY])
def test_behind_a_trusted_proxy_the_client_hop_is_throttled(api: APIClient, operator: User) -> None:
    # The proxy appends the client's address; what the client wrote before it is ignored.
    limit = _rate_limit()
    codes = [
        _login(api, f"guess-{n}", "wrong", PROXY, f"198.51.100.{n}, {CLIENT}").status_code
        for n in range(limit + 5)
    ]
    assert codes == [400] * limit + [429] * 5
    assert _login(api, "op", "pw-for-tests-1", PROXY, f"10.9.9.9, {CLIENT}").status_code == 429
    # Another client behind the same proxy is not held up by the first.
    assert _login(api, "op", "pw-for-tests-1", PROXY, OTHER_CLIENT).status_code == 200


def test_an_untrusted_peer_is_its_own_client_whatever_it_forwards(api: APIClient, operator: User) -> None:
    # With a proxy configured, a peer that is not that proxy is still counted as itself.
    limit = _rate_limit()
    with override_settings(TRUSTED_PROXIES=[PROXY]):
        codes = [
            _login(api, f"guess-{n}", "wrong", CLIENT, f"198.51.100.{n}").status_code
            for n in range(limit + 1)
        ]
    assert codes == [400] * limit + [429]


def test_ipv6_clients_of_one_64_share_a_throttle(api: APIClient, operator: User) -> None:
    # An IPv6 host can take a new address of its /64 for each request.
    limit = _rate_limit()
    codes = [
        _login(api, f"guess-{n}", "wrong", f"2001:db8:1:2::{n + 1:x}", None).status_code
        for n in range(limit + 1)
    ]
    assert codes == [400] * limit + [429]
    assert _login(api, "op", "pw-for-tests-1", "2001:db8:1:3::1", None).status_code == 200
