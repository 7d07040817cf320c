"""Fixtures for the ingestion tests: real FTP, FTPS and SFTP servers on 127.0.0.1 with sample files."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingestion.addresses import LOOPBACK
from ingestion.remote import Endpoint
from ingestion.tests.servers import FtpServer, SshServer

# The listed modification time of every sample file, so tests can compare it exactly.
SAMPLE_MTIME = datetime(2024, 3, 1, 12, 30, 15, tzinfo=UTC)


def _sample_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# name -> content of the files a listing must return (sorted by name, as the client sorts).
SAMPLE_FILES: dict[str, bytes] = {
    "2024-03-01_meter-a.slg_v2": _sample_bytes(1, 10_000),
    "2024-03-02_meter-b.sgl_v2": _sample_bytes(2, 150_000),
    "2024-03-03_meter-c.SLG_V2": _sample_bytes(3, 1),
    "2024-03-04_empty.slg_v2": b"",
}


def populate(directory: Path) -> None:
    """Write the sample files, plus what a listing must leave out, into a server's directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in SAMPLE_FILES.items():
        (directory / name).write_bytes(content)
    (directory / "readme.txt").write_text("not a meter file\n")
    (directory / "2024-03-05_meter-d.slg_v2.tmp").write_bytes(b"still uploading")
    # Not recursive: a matching file in a subdirectory stays out, and so does a matching directory.
    (directory / "archive").mkdir(exist_ok=True)
    (directory / "archive" / "2023-12-31_old.slg_v2").write_bytes(b"old")
    (directory / "looks-like-a-file.slg_v2").mkdir(exist_ok=True)
    stamp = SAMPLE_MTIME.timestamp()
    for name in SAMPLE_FILES:
        os.utime(directory / name, (stamp, stamp))


def fast(endpoint: Endpoint) -> Endpoint:
    """Short timeouts and a tiny backoff: the servers are local (loopback, allowed here)."""
    return replace(
        endpoint, connect_timeout=5, read_timeout=10, retries=2, backoff=0.01, allowed_networks=LOOPBACK
    )


@pytest.fixture(autouse=True)
def secrets_dir(tmp_path_factory: pytest.TempPathFactory, settings: Any) -> Path:
    """Each test's own INGESTION_SECRETS_DIR: the files sources may read (CA bundles, keys)."""
    folder = tmp_path_factory.mktemp("secrets")
    settings.INGESTION_SECRETS_DIR = str(folder)
    return folder


@pytest.fixture(scope="module")
def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """A plain FTP server (MLSD) with the sample files, shared by a test module."""
    server = FtpServer(tmp_path_factory.mktemp("ftp"))
    populate(server.home)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """An explicit-FTPS server (TLS required on both channels, self-signed certificate)."""
    server = FtpServer(tmp_path_factory.mktemp("ftps"), tls=True)
    populate(server.home)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ftp_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., FtpServer]]:
    """Start FTP servers with special options (throttle, mlsd, tls) for one test; all stop after it."""
    started: list[FtpServer] = []

    def start(**options: Any) -> FtpServer:
        server = FtpServer(tmp_path_factory.mktemp("ftp-special"), **options)
        populate(server.home)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """OpenSSH's sshd with the sample files, key login for the current user."""
    server = SshServer(tmp_path_factory.mktemp("sftp"))
    populate(server.files)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def ftp_endpoint_for(server: FtpServer) -> Endpoint:
    """An endpoint for a test FTP/FTPS server, trusting its certificate."""
    return fast(
        Endpoint(
            protocol="ftps" if server.tls else "ftp",
            host="127.0.0.1",
            port=server.port,
            username=server.user,
            password=server.password,
            remote_path="/",
            ca_file=str(server.certfile) if server.certfile else None,
        )
    )


@pytest.fixture
def ftp_endpoint(ftp_server: FtpServer) -> Endpoint:
    """The plain FTP server's endpoint."""
    return ftp_endpoint_for(ftp_server)


@pytest.fixture
def ftps_endpoint(ftps_server: FtpServer) -> Endpoint:
    """The FTPS server's endpoint, with its certificate as the CA file."""
    return ftp_endpoint_for(ftps_server)


@pytest.fixture
def sftp_endpoint(sftp_server: SshServer) -> Endpoint:
    """The SFTP server's endpoint: client key, pinned host key line, absolute directory."""
    return fast(
        Endpoint(
            protocol="sftp",
            host="127.0.0.1",
            port=sftp_server.port,
            username=sftp_server.user,
            private_key=sftp_server.client_private_key,
            remote_path=str(sftp_server.files),
            host_key=sftp_server.host_key_line,
        )
    )
