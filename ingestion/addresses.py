"""Which hosts a remote source may name, and which addresses it may connect to.

Pure Python (no Django), shared by the validation of a source (API and admin) and by the
clients in `ingestion/remote.py`, which check the address a name resolves to at connect
time and connect to that checked address only (DNS may point a harmless-looking name at
127.0.0.1 or at a cloud's metadata service at any moment).

Three classes of address:

- always refused (`ALWAYS_REFUSED`): link-local (which holds the metadata services of AWS,
  GCP, Azure and OpenStack at 169.254.169.254), the other cloud metadata endpoints, multicast
  and reserved ranges. No meter server lives there and no setting opens them;
- not public (loopback, RFC 1918, unique-local IPv6, shared CGNAT space, 0.0.0.0 and ::,
  and every other range Python's `ipaddress` does not call global): refused unless a
  network in the allow list (INGESTION_ALLOWED_NETWORKS) holds the address;
- public: allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused whatever the allow list says: what an attacker wants a server-side client to reach.
ALWAYS_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), why)
    for network, why in (
        ("169.254.0.0/16", "link-local; cloud metadata services live at 169.254.169.254"),
        ("fe80::/10", "IPv6 link-local"),
        ("fd00:ec2::254/128", "the AWS metadata service over IPv6"),
        ("100.100.100.200/32", "the Alibaba Cloud metadata service"),
        ("168.63.129.16/32", "the Azure host's WireServer"),
        ("224.0.0.0/4", "multicast"),
        ("ff00::/8", "IPv6 multicast"),
        ("240.0.0.0/4", "reserved (and the broadcast address)"),
    )
)

# Names of metadata services: refused before any lookup, in case the resolver on the server
# answers them (inside the cloud it does).
METADATA_NAMES: frozenset[str] = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)

# The loopback networks the tests and `make run` (DEBUG on) allow by default.
LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

MAX_HOST_LENGTH = 253  # RFC 1035, without the trailing dot
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# A last label of digits or hex is an IPv4 address in one of inet_aton's forms (127.1,
# 2130706433, 0x7f000001): the resolver would take it as one, so it is not a name.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from CIDR texts (`10.1.0.0/16`, `::1/128`, a bare address); ValueError names a
    bad one, or one that lies inside an always-refused range (listing it would change nothing)."""
    networks: list[IPNetwork] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not a network (CIDR such as 10.20.0.0/16 or ::1/128)") from None
        for refused, why in ALWAYS_REFUSED:
            # Equal versions make both IPv4 or both IPv6, a pairing mypy does not follow.
            if network.version == refused.version and network.subnet_of(refused):  # type: ignore[arg-type]
                raise ValueError(f"{text!r} is always refused ({why}); it cannot be allowed")
        networks.append(network)
    return tuple(networks)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # ::ffff:169.254.169.254 reaches the IPv4 address; so does NAT64's 64:ff9b::/96 prefix.
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a source may not connect to `address`, to follow "<address> is" (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        inner = _embedded_ipv4(address)
        if inner is not None:
            return address_refusal(inner, allowed)
    for network, why in ALWAYS_REFUSED:
        if address.version == network.version and address in network:
            return why
    if address.is_global:
        return None
    if any(address.version == network.version and address in network for network in allowed):
        return None
    kind = (
        "loopback"
        if address.is_loopback
        else "unspecified"
        if address.is_unspecified
        else "private or otherwise not public"
    )
    return f"{kind}; list its network in INGESTION_ALLOWED_NETWORKS to allow it"


def _loopback_allowed(allowed: Sequence[IPNetwork]) -> bool:
    return any(ipaddress.ip_address("127.0.0.1") in n for n in allowed if n.version == 4)


def host_problem(host: str, allowed: Sequence[IPNetwork] = ()) -> str | None:  # noqa: PLR0911 (one answer per rule)
    """What is wrong with a source's host (None: nothing): an IP literal a source may not reach,
    a metadata service's name, or text that is neither an address nor a host name."""
    if not host:
        return "a host name or IP address is required"
    if host != host.strip() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in host):
        return "no spaces or control characters"
    if host.startswith("[") and host.endswith("]"):
        return "an IPv6 address without brackets, e.g. 2001:db8::10"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        refusal = address_refusal(address, allowed)
        return None if refusal is None else f"{host} is {refusal}"
    if "%" in host or ":" in host:
        return "not an IP address (IPv6 zone ids are not accepted) nor a host name"
    if not host.isascii():
        return "an internationalised name must be given in its ASCII (xn--) form"
    name = host.lower().removesuffix(".")
    if len(name) > MAX_HOST_LENGTH:
        return f"at most {MAX_HOST_LENGTH} characters"
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return "not a host name: letters, digits and hyphens in dot-separated labels of 1 to 63"
    if _NUMERIC_LABEL.match(labels[-1]):
        return "not a host name (it ends in a number) nor a dotted IPv4 address such as 192.0.2.10"
    if name in METADATA_NAMES:
        return f"{host} is a cloud metadata service"
    if (name == "localhost" or name.endswith(".localhost")) and not _loopback_allowed(allowed):
        return f"{host} is loopback; list 127.0.0.0/8 in INGESTION_ALLOWED_NETWORKS to allow it"
    return None
