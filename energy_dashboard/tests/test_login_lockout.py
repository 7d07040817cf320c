"""A username (or an address) that fails to log in too often is locked out (django-axes), on the
token endpoint, the admin and any Django LoginView alike; operators see and lift lockouts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connections
from django.db.models import F, Sum
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from energy_dashboard.core import roles
from energy_dashboard.core.redis import redis_client
from energy_dashboard.db_router import ModuleRouter

pytestmark = pytest.mark.django_db(databases="__all__")

BASE = Path(__file__).resolve().parents[2]
TOKEN_URL = "/api/v1/auth/token/"
PASSWORD = "pw-for-tests-1"  # conftest's make_user
PROXY = "192.0.2.10"


def _address(n: int) -> str:
    """A new client address per attempt (documentation range, RFC 5737): rotating gains nothing."""
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    # The per-address throttle counts in Redis, which outlives each test's transaction.
    def clear() -> None:
        client = redis_client()
        for key in client.scan_iter(match="*throttle_login_*"):
            client.delete(key)

    clear()
    yield
    clear()


def _limit() -> int:
    return int(settings.AXES_FAILURE_LIMIT)


def _token(api: APIClient, username: str, password: str, remote_addr: str, **extra: Any) -> Any:
    return api.post(
        TOKEN_URL,
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=remote_addr,
        **extra,
    )


def _lock_out_by_token(api: APIClient, username: str, first: int = 0) -> list[Any]:
    return [_token(api, username, "wrong", _address(first + n)) for n in range(_limit())]


def test_the_token_endpoint_locks_a_username_out_from_any_address(api: APIClient, operator: User) -> None:
    responses = _lock_out_by_token(api, "op")
    assert [r.status_code for r in responses[:-1]] == [400] * (_limit() - 1)
    # The failure that reaches the limit is already answered with the lockout.
    locked = responses[-1]
    assert locked.status_code == 429
    assert locked.json()["code"] == "locked_out"
    assert "minutes" in locked.json()["message"]
    assert 0 < int(locked["Retry-After"]) <= settings.AXES_COOLOFF_TIME.total_seconds()
    # The right password, from yet another address, gets no token while the lockout lasts.
    right = _token(api, "op", PASSWORD, _address(500))
    assert right.status_code == 429 and right.json()["code"] == "locked_out"
    assert not Token.objects.filter(user=operator).exists()


def test_axes_sees_the_username_and_the_client_of_a_token_request(api: APIClient, operator: User) -> None:
    # ObtainAuthToken hands DRF's Request to authenticate(); axes must read both from it.
    with override_settings(TRUSTED_PROXIES=[PROXY]):
        _token(api, "op", "wrong", PROXY, HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address, attempt.path_info) == ("op", "203.0.113.9", TOKEN_URL)
    assert attempt.failures_since_start == 1
    assert "wrong" not in attempt.post_data


def test_failures_below_the_limit_do_not_lock(api: APIClient, operator: User) -> None:
    for n in range(_limit() - 1):
        assert _token(api, "op", "wrong", _address(n)).status_code == 400
    assert _token(api, "op", PASSWORD, _address(99)).status_code == 200


def test_a_lockout_holds_one_username_only(api: APIClient, operator: User, viewer: User) -> None:
    _lock_out_by_token(api, "op")
    assert _token(api, "viewer", PASSWORD, _address(600)).status_code == 200


def test_one_address_failing_for_many_usernames_is_locked_out(api: APIClient, operator: User) -> None:
    # Spraying passwords over usernames from one address is stopped by the address's own count.
    codes = [_token(api, f"guess-{n}", "wrong", "203.0.113.50").status_code for n in range(_limit())]
    assert codes == [400] * (_limit() - 1) + [429]
    assert _token(api, "op", PASSWORD, "203.0.113.50").status_code == 429
    assert _token(api, "op", PASSWORD, "203.0.113.51").status_code == 200


def test_failures_during_a_lockout_neither_extend_it_nor_grow_its_record(
    api: APIClient, operator: User
) -> None:
    _lock_out_by_token(api, "op")
    before = list(
        AccessAttempt.objects.values_list("pk", "attempt_time", "failures_since_start", "post_data")
    )
    for n in range(5):
        assert _token(api, "op", "wrong", _address(700 + n)).status_code == 429
    after = list(AccessAttempt.objects.values_list("pk", "attempt_time", "failures_since_start", "post_data"))
    assert after == before


def test_the_cool_off_lifts_a_lockout(api: APIClient, operator: User) -> None:
    _lock_out_by_token(api, "op")
    assert _token(api, "op", PASSWORD, _address(800)).status_code == 429
    # As if the cool-off had passed since the last failure.
    AccessAttempt.objects.update(
        attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )
    assert _token(api, "op", PASSWORD, _address(801)).status_code == 200


@override_settings(AXES_COOLOFF_TIME=timedelta(seconds=2))
def test_a_short_cool_off_lifts_a_lockout_in_real_time(api: APIClient, operator: User) -> None:
    import time

    # One address: its one record's time moves with each failure, so a slow machine still
    # counts every failure within the short cool-off.
    for _ in range(_limit()):
        _token(api, "op", "wrong", "203.0.113.70")
    assert _token(api, "op", PASSWORD, _address(900)).status_code == 429
    time.sleep(2.2)
    assert _token(api, "op", PASSWORD, _address(901)).status_code == 200


def test_axes_reset_username_lifts_one_lockout(api: APIClient, operator: User, viewer: User) -> None:
    _lock_out_by_token(api, "op")
    _lock_out_by_token(api, "viewer", first=100)
    out = StringIO()
    call_command("axes_reset_username", "op", stdout=out)
    assert "attempts removed" in out.getvalue()
    assert _token(api, "op", PASSWORD, _address(300)).status_code == 200
    assert _token(api, "viewer", PASSWORD, _address(301)).status_code == 429


def test_axes_list_attempts_shows_who_failed_from_where(api: APIClient, operator: User) -> None:
    _token(api, "op", "wrong", "203.0.113.90")
    out = StringIO()
    call_command("axes_list_attempts", stdout=out)
    assert out.getvalue().split() == ["203.0.113.90", "op", "1"]


def test_axes_reset_lifts_every_lockout(api: APIClient, operator: User, viewer: User) -> None:
    _lock_out_by_token(api, "op")
    _lock_out_by_token(api, "viewer", first=100)
    call_command("axes_reset", stdout=StringIO())
    assert not AccessAttempt.objects.exists()
    assert _token(api, "op", PASSWORD, _address(300)).status_code == 200
    assert _token(api, "viewer", PASSWORD, _address(301)).status_code == 200


def test_axes_reset_ip_lifts_an_address_lockout(api: APIClient, operator: User) -> None:
    for n in range(_limit()):
        _token(api, f"guess-{n}", "wrong", "203.0.113.60")
    assert _token(api, "op", PASSWORD, "203.0.113.60").status_code == 429
    call_command("axes_reset_ip", "203.0.113.60", stdout=StringIO())
    assert _token(api, "op", PASSWORD, "203.0.113.60").status_code == 200


def _form_login(client: Client, url: str, username: str, password: str, remote_addr: str) -> Any:
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=remote_addr)


def _assert_locked_page(response: Any) -> None:
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "Sign-in locked" in page
    assert "minutes" in page
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("/admin/login/", id="admin"),
        # A plain django.contrib.auth LoginView, as the coming sign-in page will be.
        pytest.param(
            "/accounts/login/", id="login-view", marks=pytest.mark.urls("energy_dashboard.tests.login_urls")
        ),
    ],
)
def test_form_logins_lock_out_with_a_readable_page(client: Client, operator: User, url: str) -> None:
    responses = [_form_login(client, url, "op", "wrong", _address(n)) for n in range(_limit())]
    assert [r.status_code for r in responses[:-1]] == [200] * (_limit() - 1)  # the form again, with its error
    _assert_locked_page(responses[-1])
    right = _form_login(client, url, "op", PASSWORD, _address(400))
    _assert_locked_page(right)
    assert "_auth_user_id" not in client.session
    call_command("axes_reset_username", "op", stdout=StringIO())
    assert _form_login(client, url, "op", PASSWORD, _address(401)).status_code == 302
    assert client.session["_auth_user_id"] == str(operator.pk)


def test_failures_count_across_the_token_endpoint_and_the_admin(
    api: APIClient, client: Client, operator: User
) -> None:
    for n in range(_limit() - 1):
        _token(api, "op", "wrong", _address(n))
    _assert_locked_page(_form_login(client, "/admin/login/", "op", "wrong", _address(50)))
    assert _token(api, "op", PASSWORD, _address(51)).status_code == 429


def test_operators_see_and_lift_lockouts_in_the_admin(
    api: APIClient, client: Client, operator: User, make_user: Callable[..., User]
) -> None:
    _lock_out_by_token(api, "op")
    colleague = make_user("op2", roles.OPERATORS, is_staff=True)
    client.force_login(colleague)
    index = client.get("/admin/").content.decode()
    assert "Access attempts" in index
    # Ten rows of one failure each (one per address): each says its username is locked out.
    total = AccessAttempt.objects.filter(username="op").aggregate(n=Sum("failures_since_start"))["n"]
    assert total == _limit() == AccessAttempt.objects.filter(username="op").count()
    listing = client.get("/admin/axes/accessattempt/?locked=yes")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert page.count("Locked out: username") == _limit()
    assert client.get("/admin/axes/accessattempt/?locked=no").content.decode().count("Locked out") == 0
    ids = [str(pk) for pk in AccessAttempt.objects.filter(username="op").values_list("pk", flat=True)]
    deleted = client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert deleted.status_code == 302
    assert not AccessAttempt.objects.filter(username="op").exists()
    assert _token(api, "op", PASSWORD, _address(300)).status_code == 200


def test_the_admin_counts_what_is_left_and_what_expired(
    api: APIClient, client: Client, operator: User, make_user: Callable[..., User]
) -> None:
    # First: a login makes axes delete the expired rows.
    client.force_login(make_user("op2", roles.OPERATORS, is_staff=True))
    for n in range(3):
        _token(api, "op", "wrong", _address(n))
    _token(api, "ghost", "wrong", "203.0.113.80")
    AccessAttempt.objects.filter(username="ghost").update(
        attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )
    page = client.get("/admin/axes/accessattempt/").content.decode()
    assert page.count(f"{_limit() - 3} attempts left") == 3
    assert page.count("Expired") == 1


def test_viewers_do_not_see_login_attempts(client: Client, make_user: Callable[..., User]) -> None:
    client.force_login(make_user("staff-viewer", roles.VIEWERS, is_staff=True))
    assert client.get("/admin/axes/accessattempt/").status_code == 403


def test_axes_tables_live_on_the_default_database(api: APIClient, operator: User) -> None:
    assert ModuleRouter().db_for_write(AccessAttempt) == "default"
    assert {"axes_accessattempt", "axes_accesslog", "axes_accessfailurelog"} <= set(
        connections["default"].introspection.table_names()
    )
    _token(api, "op", "wrong", _address(0))
    assert AccessAttempt.objects.get()._state.db == "default"
    if len({settings.DATABASE_IDENTITIES[a] for a in settings.DATABASES}) > 1:
        assert "axes_accessattempt" not in connections["sensors"].introspection.table_names()


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    names = ("LOGIN_LOCKOUT_FAILURES", "LOGIN_LOCKOUT_COOLOFF")
    base_env = {k: v for k, v in os.environ.items() if k not in names}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE,
        env={**base_env, "DEBUG": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_lockout_limits_are_read_from_the_environment() -> None:
    code = "from django.conf import settings as s; print(s.AXES_FAILURE_LIMIT, int(s.AXES_COOLOFF_TIME.total_seconds()))"
    defaults = _manage({}, "shell", "-c", code)
    assert defaults.returncode == 0, defaults.stderr
    assert defaults.stdout.strip().splitlines()[-1] == "10 900"
    chosen = _manage({"LOGIN_LOCKOUT_FAILURES": "5", "LOGIN_LOCKOUT_COOLOFF": "60"}, "shell", "-c", code)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip().splitlines()[-1] == "5 60"


@pytest.mark.parametrize("name", ["LOGIN_LOCKOUT_FAILURES", "LOGIN_LOCKOUT_COOLOFF"])
def test_a_lockout_limit_below_one_stops_start_up(name: str) -> None:
    result = _manage({name: "0"}, "check")
    assert result.returncode != 0
    assert f"{name}=0" in result.stderr
