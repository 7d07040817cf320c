"""The container set-up trusts forwarded addresses from its proxy only (no Docker engine runs here,
so the files are read, not run)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from energy_dashboard.core.client_ip import parse_address, parse_trusted_proxies

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _default(value: str) -> str:
    """The value compose gives `${NAME:-default}` when NAME is unset."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    return match.group(1) if match else value


def test_compose_trusts_exactly_its_proxy() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yml").read_text())
    services = compose["services"]
    proxy_address = _default(services["proxy"]["networks"]["default"]["ipv4_address"])
    assert parse_address(proxy_address) is not None
    subnet = parse_trusted_proxies([_default(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])])
    assert parse_address(proxy_address) in subnet[0]
    for name in ("web", "websockets", "worker", "beat"):
        assert _default(services[name]["environment"]["TRUSTED_PROXIES"]) == proxy_address
    command = services["web"]["command"]
    allowed = command[command.index("--forwarded-allow-ips") + 1]
    assert _default(allowed) == proxy_address


def test_nginx_overwrites_the_forwarded_header() -> None:
    conf = (DOCKER / "nginx.conf").read_text()
    assert "$proxy_add_x_forwarded_for" not in conf
    directives = re.findall(r"proxy_set_header\s+X-Forwarded-For\s+([^;]+);", conf)
    assert directives and set(directives) == {"$remote_addr"}


def test_gunicorn_never_trusts_every_peer() -> None:
    for name in ("Dockerfile", "compose.yml"):
        text = (DOCKER / name).read_text()
        assert not re.search(r"forwarded-allow-ips\"?,?\s*\"\*\"", text), name
