"""Where sources may connect: the host rules, and the check of every address a name resolves to,
made at connect time, with the connection going to the address that was checked.

Names are resolved by a test double of getaddrinfo (no DNS server can be run here for arbitrary
names); a guard on socket connections fails any test that would connect to anything but
loopback, so a refusal is proven without ever sending a packet elsewhere."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestion import addresses, remote, services
from ingestion.models import IngestedFile, RemoteSource
from ingestion.tests.helpers import meter_file, source_for
from ingestion.tests.servers import FtpServer, SshServer

EVERYTHING = addresses.parse_networks(["0.0.0.0/0", "::/0"])


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "169.254.170.2",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "100.100.100.200",
        "224.0.0.1",
        "255.255.255.255",
        "metadata.google.internal",
        "METADATA.google.internal.",
        "metadata",
        "instance-data.ec2.internal",
    ],
)
def test_link_local_and_metadata_hosts_are_refused_whatever_is_allowed(host: str) -> None:
    assert addresses.host_problem(host, EVERYTHING) is not None


@pytest.mark.parametrize(
    ("host", "allowed_by"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("127.8.9.10", "127.0.0.0/8"),
        ("::1", "::1/128"),
        ("localhost", "127.0.0.0/8"),
        ("db.localhost", "127.0.0.0/8"),
        ("10.1.2.3", "10.0.0.0/8"),
        ("172.16.0.9", "172.16.0.0/12"),
        ("192.168.1.20", "192.168.0.0/16"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("fc00::5", "fc00::/7"),
        ("fd12:3456::1", "fc00::/7"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("::", "::/128"),
        ("::ffff:10.0.0.1", "10.0.0.0/8"),
    ],
)
def test_loopback_and_private_hosts_are_refused_unless_their_network_is_allowed(
    host: str, allowed_by: str
) -> None:
    assert addresses.host_problem(host, ()) is not None
    assert addresses.host_problem(host, addresses.parse_networks([allowed_by])) is None
    assert addresses.host_problem(host, addresses.parse_networks(["203.0.113.0/24"])) is not None


@pytest.mark.parametrize(
    "host", ["ftp.example.com", "meters-1.utility.pt", "xn--mnchen-3ya.de", "93.184.216.34"]
)
def test_public_names_and_addresses_are_accepted(host: str) -> None:
    assert addresses.host_problem(host, ()) is None


@pytest.mark.parametrize(
    "host",
    [
        "",
        " ftp.example.com",
        "ftp.example.com\n",
        "ftp example.com",
        "[2001:db8::1]",
        "fe80::1%eth0",
        "ftp..example.com",
        "-ftp.example.com",
        "ftp-.example.com",
        "ftp_x.example.com",
        "münchen.de",
        "a" * 64 + ".example.com",
        ("a" * 60 + ".") * 5 + "com",
        # inet_aton's other spellings of 127.0.0.1: a resolver would take them as addresses.
        "127.1",
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "ftp.example.123",
    ],
)
def test_text_that_is_neither_an_address_nor_a_host_name_is_refused(host: str) -> None:
    assert addresses.host_problem(host, EVERYTHING) is not None


def test_an_allow_list_cannot_open_an_always_refused_range() -> None:
    with pytest.raises(ValueError, match="always refused"):
        addresses.parse_networks(["169.254.169.254/32"])
    with pytest.raises(ValueError, match="not a network"):
        addresses.parse_networks(["10.0.0.0/33"])
    assert addresses.parse_networks(["10.0.0.0/8", " ", "::1"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


# --------------------------------------------------------------------------- resolution


def fake_getaddrinfo(answers: dict[str, list[str]], calls: list[str] | None = None) -> Callable[..., Any]:
    """getaddrinfo that answers each name with the addresses a test gives it (in order, one
    list per call when several are given with `|`), and nothing else."""

    def lookup(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        rounds = answers[host]
        current = rounds[0] if len(rounds) == 1 else rounds.pop(0)
        result: list[tuple[Any, ...]] = []
        for text in current.split(","):
            address = ipaddress.ip_address(text)
            if address.version == 4:
                result.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, port)))
            else:
                result.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (text, port, 0, 0)))
        return result

    return lookup


@pytest.mark.parametrize(
    "answer",
    ["10.0.0.1", "169.254.169.254", "127.0.0.1", "93.184.216.34,169.254.169.254", "fd00:ec2::254"],
)
def test_a_name_that_resolves_to_a_refused_address_is_refused_before_connecting(answer: str) -> None:
    lookup = fake_getaddrinfo({"meters.example.com": [answer]})
    with pytest.raises(remote.RemoteError) as refused:
        remote.resolve("meters.example.com", 21, (), lookup=lookup)
    assert refused.value.kind == "address" and not refused.value.retryable
    assert "meters.example.com" in str(refused.value)


def test_every_address_of_a_public_name_is_returned_for_the_connection() -> None:
    lookup = fake_getaddrinfo({"meters.example.com": ["93.184.216.34,2606:2800:220:1::1"]})
    found = remote.resolve("meters.example.com", 2121, (), lookup=lookup)
    assert [sockaddr[0] for _, sockaddr in found] == ["93.184.216.34", "2606:2800:220:1::1"]


def test_an_unknown_name_is_a_connect_error_that_says_so() -> None:
    with pytest.raises(remote.RemoteError) as unknown:
        remote.resolve("nowhere.example.com", 21, (), lookup=fake_getaddrinfo({}))
    assert unknown.value.kind == "connect" and "not found" in str(unknown.value)


# --------------------------------------------------------------------------- at connect time


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every TCP address a connection is attempted to; anything but loopback fails the test
    instead of leaving the machine."""
    attempted: list[str] = []
    original = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            attempted.append(host)
            assert ipaddress.ip_address(host).is_loopback, f"a test tried to connect to {host}"
        original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempted


@pytest.fixture
def ftp(tmp_path: Path) -> Iterator[FtpServer]:
    server = FtpServer(tmp_path / "ftp")
    (server.home / "a.slg_v2").write_bytes(meter_file("PT7001", count=4))
    server.start()
    yield server
    server.stop()


pytestmark_db = pytest.mark.django_db(databases="__all__")


@pytestmark_db
@pytest.mark.parametrize("answer", ["10.0.0.1", "169.254.169.254", "::ffff:169.254.169.254"])
def test_a_scan_of_a_name_pointed_at_a_refused_address_connects_nowhere(
    answer: str, ftp: FtpServer, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "getaddrinfo", fake_getaddrinfo({"meters.example.com": [answer]}))
    source = source_for(ftp, host="meters.example.com")
    result = services.source_scan(source=source, sleep=lambda s: None)
    assert not result.ok and connections == []
    source.refresh_from_db()
    assert source.last_error_kind == "address" and answer.rsplit(":", maxsplit=1)[-1] in source.last_error
    assert not IngestedFile.objects.exists()


@pytestmark_db
def test_the_connection_goes_to_the_address_that_was_checked(
    ftp: FtpServer, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the first answer is harmless, every later one points elsewhere. The client
    # resolves once per connection and connects to what it checked, data connections included.
    calls: list[str] = []
    lookup = fake_getaddrinfo(
        {"meters.example.com": ["127.0.0.1", "10.9.9.9", "10.9.9.9", "10.9.9.9"]}, calls
    )
    monkeypatch.setattr(remote, "getaddrinfo", lookup)
    source = source_for(ftp, host="meters.example.com")
    endpoint = services.source_endpoint(source)
    with remote.connect(endpoint) as client:
        assert [f.name for f in client.list_files()] == ["a.slg_v2"]
    assert calls == ["meters.example.com"]
    assert set(connections) == {"127.0.0.1"} and len(connections) >= 2  # control and data


@pytestmark_db
def test_sftp_checks_the_resolved_address_too(
    connections: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Any
) -> None:
    server = SshServer(tmp_path / "ssh")
    server.start()
    connections.clear()  # the server's start-up check
    try:
        monkeypatch.setattr(remote, "getaddrinfo", fake_getaddrinfo({"sftp.example.com": ["127.0.0.1"]}))
        source = source_for(server, name="sftp", host="sftp.example.com", host_key=server.host_key_line)
        assert services.source_scan(source=source, sleep=lambda s: None).ok
        settings.INGESTION_ALLOWED_NETWORKS = []
        connections.clear()
        result = services.source_scan(source=RemoteSource.objects.get(pk=source.pk), sleep=lambda s: None)
    finally:
        server.stop()
    assert not result.ok and connections == []
    assert RemoteSource.objects.get(pk=source.pk).last_error_kind == "address"


@pytestmark_db
def test_loopback_is_refused_at_connect_time_when_the_setting_does_not_allow_it(
    ftp: FtpServer, connections: list[str], settings: Any
) -> None:
    # A source stored while loopback was allowed (or written straight to the database).
    source = source_for(ftp)
    settings.INGESTION_ALLOWED_NETWORKS = []
    result = services.source_scan(source=source, sleep=lambda s: None)
    assert not result.ok and connections == []
    assert RemoteSource.objects.get(pk=source.pk).last_error_kind == "address"
