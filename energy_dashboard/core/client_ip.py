"""The client's address, as every part that keys on it (throttles, the login lockout) must see it.

`X-Forwarded-For` is written by whoever sent the request, so it is believed only when the
peer that connected (`REMOTE_ADDR`) is one of `TRUSTED_PROXIES`, and then only as far as the
hops it names are trusted proxies too: the client is the right-most hop that is not a trusted
proxy. Anything to the left of that hop was written by the client itself and is ignored. With
no proxy configured (the default) the header is never read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    # Types only: settings.py validates TRUSTED_PROXIES with this module while it loads.
    from django.http import HttpRequest, HttpResponse
    from rest_framework.request import Request

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# An IPv6 client is usually given a whole /64, so one machine can take a new address for every
# request: throttles count the /64 as one client (the lockout records the exact address).
IPV6_THROTTLE_PREFIX = 64
# A forwarded header longer than this is not a proxy chain (nginx writes one address).
MAX_FORWARDED_HOPS = 20


def parse_trusted_proxies(values: list[str] | tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """The networks of `TRUSTED_PROXIES` entries (addresses or CIDRs); a bad entry is refused."""
    networks: list[IPNetwork] = []
    for raw in values:
        value = raw.strip()
        if not value:
            continue
        if value == "*":
            raise ImproperlyConfigured(
                "TRUSTED_PROXIES=*: trusting every peer lets any client choose the address it is "
                "throttled and locked out under. List the reverse proxies' addresses or networks."
            )
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"TRUSTED_PROXIES: {value!r} is not an IP address or network (CIDR). List the "
                "addresses of the reverse proxies in front of this service, comma-separated "
                "(e.g. TRUSTED_PROXIES=172.30.0.10 or 10.0.0.0/8); leave it empty without a proxy."
            ) from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _networks(values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return parse_trusted_proxies(values)


def parse_address(text: str) -> IPAddress | None:
    """An address as a proxy or socket writes it (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`), or None."""
    value = text.strip()
    if value.startswith("["):
        # [v6] or [v6]:port
        end = value.find("]")
        if end == -1:
            return None
        value = value[1:end]
    elif value.count(":") == 1:
        # v4:port (an IPv6 address has at least two colons)
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; they are IPv4 clients.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(request: HttpRequest | Request) -> IPAddress | None:
    """The client's address (see the module's docstring); None when the peer's is unknown."""
    peer = parse_address(request.META.get("REMOTE_ADDR") or "")
    if peer is None:
        return None
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _trusted(peer, networks):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR") or ""
    hops = [hop for hop in forwarded.split(",") if hop.strip()][-MAX_FORWARDED_HOPS:]
    client = peer
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            # A trusted proxy passed on something that is no address: the last proxy that
            # spoke sensibly is the best we know.
            break
        client = address
        if not _trusted(address, networks):
            break
    return client


def client_ip(request: HttpRequest | Request) -> str | None:
    """`client_address` as text (django-axes' AXES_CLIENT_IP_CALLABLE; logs)."""
    address = client_address(request)
    return None if address is None else str(address)


def throttle_ident(request: HttpRequest | Request) -> str:
    """The key a throttle counts a client under: its address, or its /64 for IPv6."""
    address = client_address(request)
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_THROTTLE_PREFIX}", strict=False))
    return str(address)


# What a client could write to pass for a proxy's word: the scheme it used (is_secure, the
# HTTPS redirect), the host and port it asked for, and the hops before it.
FORWARDED_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_FORWARDED",
)


def peer_is_trusted_proxy(request: HttpRequest | Request) -> bool:
    """True when the peer that connected is one of TRUSTED_PROXIES."""
    peer = parse_address(request.META.get("REMOTE_ADDR") or "")
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    return peer is not None and bool(networks) and _trusted(peer, networks)


class ForwardedHeadersMiddleware:
    """Drops X-Forwarded-* (and Forwarded) from peers that are not trusted proxies.

    Django believes `X-Forwarded-Proto` for `request.is_secure()` (SECURE_PROXY_SSL_HEADER)
    whoever sent it; only a proxy of ours may say how the client connected.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not peer_is_trusted_proxy(request):
            for name in FORWARDED_HEADERS:
                request.META.pop(name, None)
        return self.get_response(request)
