"""Which address is the client's: X-Forwarded-For is believed only from TRUSTED_PROXIES."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, override_settings

from energy_dashboard.core.client_ip import (
    MAX_FORWARDED_HOPS,
    ForwardedHeadersMiddleware,
    client_ip,
    parse_address,
    parse_trusted_proxies,
    throttle_ident,
)

BASE = Path(__file__).resolve().parents[2]


def _ip(remote_addr: str, forwarded: str | None = None) -> str | None:
    extra: dict[str, Any] = {"REMOTE_ADDR": remote_addr}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **extra))


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert _ip("203.0.113.7", "198.51.100.1") == "203.0.113.7"


@override_settings(TRUSTED_PROXIES=["192.0.2.10"])
def test_a_peer_that_is_not_a_trusted_proxy_is_the_client() -> None:
    assert _ip("203.0.113.7", "198.51.100.1") == "203.0.113.7"


@override_settings(TRUSTED_PROXIES=["192.0.2.10"])
def test_behind_a_trusted_proxy_the_right_most_hop_is_the_client() -> None:
    assert _ip("192.0.2.10", "198.51.100.1") == "198.51.100.1"
    # Hops left of the one the proxy wrote are the client's own words.
    assert _ip("192.0.2.10", "10.0.0.1, 1.1.1.1, 198.51.100.1") == "198.51.100.1"
    # No header: the proxy itself is all we know.
    assert _ip("192.0.2.10") == "192.0.2.10"


@override_settings(TRUSTED_PROXIES=["192.0.2.0/24", "2001:db8:ffff::/48"])
def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop() -> None:
    assert _ip("192.0.2.10", "6.6.6.6, 198.51.100.1, 2001:db8:ffff::1, 192.0.2.20") == "198.51.100.1"
    # Every hop trusted: the left-most one is the nearest to the client we know.
    assert _ip("192.0.2.10", "192.0.2.30, 192.0.2.20") == "192.0.2.30"


@override_settings(TRUSTED_PROXIES=["192.0.2.10"])
def test_a_hop_that_is_no_address_stops_the_walk_at_the_last_proxy() -> None:
    assert _ip("192.0.2.10", "unknown") == "192.0.2.10"
    assert _ip("192.0.2.10", "198.51.100.1, <script>") == "192.0.2.10"


@override_settings(TRUSTED_PROXIES=["192.0.2.10"])
def test_an_overlong_header_is_read_only_at_its_right_end() -> None:
    hops = ", ".join(["192.0.2.10"] * (MAX_FORWARDED_HOPS + 5))
    assert _ip("192.0.2.10", f"198.51.100.1, {hops}") == "192.0.2.10"


@override_settings(TRUSTED_PROXIES=["192.0.2.10"])
def test_ports_brackets_and_mapped_ipv4_are_understood() -> None:
    assert _ip("::ffff:192.0.2.10", "198.51.100.1:4711") == "198.51.100.1"
    assert _ip("192.0.2.10", "[2001:db8::1]:443") == "2001:db8::1"
    # The same IPv6 address written two ways is one client.
    assert _ip("192.0.2.10", "2001:0db8:0:0::1") == "2001:db8::1"


def test_an_unknown_peer_has_no_address() -> None:
    assert _ip("") is None
    assert throttle_ident(RequestFactory().get("/", REMOTE_ADDR="")) == "unknown"


def test_throttles_count_an_ipv6_64_as_one_client() -> None:
    def ident(address: str) -> str:
        return throttle_ident(RequestFactory().get("/", REMOTE_ADDR=address))

    assert ident("2001:db8:1:2::1") == ident("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ident("2001:db8:1:3::1") != ident("2001:db8:1:2::1")
    assert ident("203.0.113.7") == "203.0.113.7"


def test_parse_address_refuses_what_is_not_an_address() -> None:
    assert parse_address("") is None
    assert parse_address("[::1") is None
    assert parse_address("example.com") is None
    assert str(parse_address(" 198.51.100.1 ")) == "198.51.100.1"


@pytest.mark.parametrize("value", ["*", "proxy.example.com", "10.0.0.0/33"])
def test_a_bad_trusted_proxy_is_refused(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES"):
        parse_trusted_proxies([value])


def _settings_value(env: dict[str, str], expression: str) -> subprocess.CompletedProcess[str]:
    base_env = {k: v for k, v in os.environ.items() if k != "TRUSTED_PROXIES"}
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            f"from django.conf import settings as s; print({expression})",
        ],
        cwd=BASE,
        env={**base_env, "DEBUG": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_trusted_proxies_are_read_from_the_environment() -> None:
    result = _settings_value({"TRUSTED_PROXIES": "172.30.0.10,10.0.0.0/8"}, "s.TRUSTED_PROXIES")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['172.30.0.10', '10.0.0.0/8']"


def test_trusting_every_peer_stops_start_up() -> None:
    result = _settings_value({"TRUSTED_PROXIES": "*"}, "s.TRUSTED_PROXIES")
    assert result.returncode != 0
    assert "TRUSTED_PROXIES=*" in result.stderr


@pytest.mark.django_db
def test_a_forwarded_scheme_from_an_untrusted_peer_is_not_believed(client: Any, settings: Any) -> None:
    # With the HTTPS redirect on, a plain-HTTP request is redirected unless a proxy of ours says
    # the client came over HTTPS; a client saying it of itself is still redirected.
    settings.SECURE_SSL_REDIRECT = True
    settings.TRUSTED_PROXIES = ["10.9.0.2"]
    forged = client.get("/api/v1/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="127.0.0.1")
    assert forged.status_code == 301
    assert forged["Location"].startswith("https://")
    proxied = client.get("/api/v1/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="10.9.0.2")
    assert proxied.status_code == 401  # past the redirect: the API asks for a user


def test_the_middleware_drops_every_forwarded_header_of_an_untrusted_peer() -> None:
    seen: dict[str, Any] = {}

    def view(request: Any) -> Any:
        seen.update(request.META)
        return None

    headers: dict[str, Any] = {
        "HTTP_X_FORWARDED_FOR": "1.2.3.4",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_HOST": "evil.example",
        "HTTP_X_FORWARDED_PORT": "443",
        "HTTP_FORWARDED": "for=1.2.3.4;proto=https",
    }
    with override_settings(TRUSTED_PROXIES=["10.9.0.2"]):
        ForwardedHeadersMiddleware(view)(RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", **headers))
        assert not set(headers) & set(seen)
        seen.clear()
        ForwardedHeadersMiddleware(view)(RequestFactory().get("/", REMOTE_ADDR="10.9.0.2", **headers))
        assert set(headers) <= set(seen)


def test_daphne_reads_proxy_headers_only_behind_trusted_proxies() -> None:
    from energy_dashboard.management.commands.run import WS_MAX_MESSAGE_BYTES, _daphne_limits

    with override_settings(TRUSTED_PROXIES=[]):
        args = _daphne_limits()
        assert "--proxy-headers" not in args
        assert args[args.index("--websocket-max-message-size") + 1] == str(WS_MAX_MESSAGE_BYTES)
        assert args[args.index("--websocket-max-frame-size") + 1] == str(WS_MAX_MESSAGE_BYTES)
    with override_settings(TRUSTED_PROXIES=["10.9.0.2"]):
        assert "--proxy-headers" in _daphne_limits()
