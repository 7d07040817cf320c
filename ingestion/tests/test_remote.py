"""The remote-file clients against real servers on 127.0.0.1: pyftpdlib (FTP, FTPS) and OpenSSH (SFTP)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from energy_dashboard.testing import free_port
from ingestion.addresses import LOOPBACK
from ingestion.remote import (
    DownloadResult,
    Endpoint,
    RemoteError,
    RemoteFile,
    RemoteProtocol,
    SftpClient,
    backoff_delay,
    connect,
    download_with_retries,
    fetch_host_key,
    host_key_fingerprint,
    list_files_with_retries,
    load_private_key,
    parse_host_key_pins,
    with_retries,
)
from ingestion.tests.conftest import SAMPLE_FILES, SAMPLE_MTIME, ftp_endpoint_for
from ingestion.tests.servers import FtpServer, SshServer, make_certificate, make_ed25519_key


class Sleeps:
    """An injected sleep: records the delays, optionally does something instead of waiting."""

    def __init__(self, action: Callable[[], None] | None = None) -> None:
        self.delays: list[float] = []
        self.action = action

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.action is not None:
            self.action()


def sha(data: bytes) -> str:
    """Hex SHA-256, as DownloadResult reports it."""
    return hashlib.sha256(data).hexdigest()


def download_all(endpoint: Endpoint) -> dict[str, tuple[RemoteFile, DownloadResult, bytes]]:
    """List the endpoint and download every file in one session: name -> (listed, result, bytes)."""
    found = {}
    with connect(endpoint) as client:
        for remote in client.list_files():
            buffer = io.BytesIO()
            found[remote.name] = (remote, client.download(remote, buffer), buffer.getvalue())
    return found


def assert_sample_files(found: dict[str, tuple[RemoteFile, DownloadResult, bytes]], directory: str) -> None:
    """The listing is exactly the sample files, each complete with its size, mtime and hash."""
    # Only the matching plain files of the directory itself, sorted by name.
    assert list(found) == sorted(SAMPLE_FILES)
    for name, (remote, result, content) in found.items():
        assert remote.path == f"{directory.rstrip('/')}/{name}"
        assert remote.size == len(SAMPLE_FILES[name])
        assert remote.mtime == SAMPLE_MTIME
        assert content == SAMPLE_FILES[name]
        assert result.size == len(SAMPLE_FILES[name])
        assert result.sha256 == sha(SAMPLE_FILES[name])
        assert result.duration >= 0


# --------------------------------------------------------------------------- listing and downloading


def test_ftp_lists_matching_files_with_mlsd_and_downloads_them(ftp_endpoint: Endpoint) -> None:
    assert_sample_files(download_all(ftp_endpoint), "/")


def test_ftp_without_mlsd_lists_with_nlst_size_and_mdtm(ftp_server_factory: Callable[..., FtpServer]) -> None:
    server = ftp_server_factory(mlsd=False)
    assert_sample_files(download_all(ftp_endpoint_for(server)), "/")


def test_ftp_relative_remote_path_is_resolved_from_the_login_directory(ftp_server: FtpServer) -> None:
    endpoint = replace(ftp_endpoint_for(ftp_server), remote_path="archive")
    files = list_files_with_retries(endpoint)
    assert [(f.path, f.size) for f in files] == [("/archive/2023-12-31_old.slg_v2", 3)]


def test_ftps_protects_both_channels_and_downloads(ftps_endpoint: Endpoint) -> None:
    # The server refuses clear-text control and data channels, so this proves AUTH TLS and PROT P.
    assert_sample_files(download_all(ftps_endpoint), "/")


def test_sftp_lists_and_downloads_with_a_key_and_a_pinned_host_key(
    sftp_endpoint: Endpoint, sftp_server: SshServer
) -> None:
    assert_sample_files(download_all(sftp_endpoint), str(sftp_server.files))


def test_patterns_choose_the_files(sftp_endpoint: Endpoint, ftp_endpoint: Endpoint) -> None:
    for endpoint in (sftp_endpoint, ftp_endpoint):
        only_sgl = replace(endpoint, patterns=("*.sgl_v2",))
        assert [f.name for f in list_files_with_retries(only_sgl)] == ["2024-03-02_meter-b.sgl_v2"]
        # A list, as a form gives it: Endpoint takes it as patterns (annotated a tuple).
        tmp = replace(endpoint, patterns=["*.tmp", "readme.*"])  # type: ignore[arg-type]
        assert [f.name for f in list_files_with_retries(tmp)] == [
            "2024-03-05_meter-d.slg_v2.tmp",
            "readme.txt",
        ]


def test_download_with_retries_writes_the_file_and_leaves_no_part(
    sftp_endpoint: Endpoint, ftps_endpoint: Endpoint, tmp_path: Path
) -> None:
    for endpoint in (sftp_endpoint, ftps_endpoint):
        remote = next(f for f in list_files_with_retries(endpoint) if f.name.endswith(".sgl_v2"))
        dest = tmp_path / f"{endpoint.protocol}-{remote.name}"
        dest.with_name(dest.name + ".part").write_bytes(b"left over by a crashed worker" * 10_000)
        result = download_with_retries(endpoint, remote, dest)
        assert dest.read_bytes() == SAMPLE_FILES[remote.name]
        assert result.sha256 == sha(SAMPLE_FILES[remote.name])
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []


# --------------------------------------------------------------------------- missing things


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_a_missing_directory_or_file_is_not_found_and_not_retried(
    protocol: str, ftp_endpoint: Endpoint, sftp_endpoint: Endpoint, tmp_path: Path
) -> None:
    endpoint = ftp_endpoint if protocol == "ftp" else sftp_endpoint
    missing_dir = replace(endpoint, remote_path=endpoint.remote_path.rstrip("/") + "/no-such-dir")
    sleeps = Sleeps()
    with pytest.raises(RemoteError) as listing:
        list_files_with_retries(missing_dir, sleep=sleeps)
    assert listing.value.kind == "not_found"
    assert "no-such-dir" in str(listing.value)
    ghost = RemoteFile(path=f"{endpoint.remote_path.rstrip('/')}/ghost.slg_v2", name="ghost.slg_v2", size=5)
    with pytest.raises(RemoteError) as download:
        download_with_retries(endpoint, ghost, tmp_path / "ghost.slg_v2", sleep=sleeps)
    assert download.value.kind == "not_found"
    assert sleeps.delays == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_a_short_transfer_is_an_io_error_and_nothing_is_kept(
    protocol: str, ftp_endpoint: Endpoint, sftp_endpoint: Endpoint, tmp_path: Path
) -> None:
    endpoint = ftp_endpoint if protocol == "ftp" else sftp_endpoint
    listed = next(f for f in list_files_with_retries(endpoint) if f.name.endswith(".sgl_v2"))
    # As if the file had been listed larger than what the server then delivers.
    remote = replace(listed, size=listed.size + 100)
    with connect(endpoint) as client, pytest.raises(RemoteError) as short:
        client.download(remote, io.BytesIO())
    assert short.value.kind == "io"
    assert f"listed with {remote.size} bytes but {listed.size} arrived" in str(short.value)

    sleeps = Sleeps()
    with pytest.raises(RemoteError) as retried:
        download_with_retries(replace(endpoint, retries=1), remote, tmp_path / "f.sgl_v2", sleep=sleeps)
    assert retried.value.kind == "io"
    assert retried.value.attempts == 2
    assert len(sleeps.delays) == 1
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- credentials


def test_ftp_wrong_password_is_an_auth_error_without_retry(ftp_endpoint: Endpoint) -> None:
    sleeps = Sleeps()
    with pytest.raises(RemoteError) as refused:
        list_files_with_retries(replace(ftp_endpoint, password="not-the-password"), sleep=sleeps)
    assert refused.value.kind == "auth"
    assert not refused.value.retryable
    assert refused.value.attempts == 1
    assert sleeps.delays == []
    message = str(refused.value)
    assert f"login as 'meter' on 127.0.0.1:{ftp_endpoint.port} was refused" in message
    assert "530" in message
    assert "not-the-password" not in message


def test_sftp_wrong_key_is_an_auth_error_without_retry(sftp_endpoint: Endpoint) -> None:
    other_private, _ = make_ed25519_key()
    sleeps = Sleeps()
    with pytest.raises(RemoteError) as refused:
        list_files_with_retries(replace(sftp_endpoint, private_key=other_private), sleep=sleeps)
    assert refused.value.kind == "auth"
    assert refused.value.attempts == 1
    assert sleeps.delays == []
    assert f"SFTP login as {sftp_endpoint.username!r} on 127.0.0.1:{sftp_endpoint.port} was refused" in str(
        refused.value
    )


def test_sftp_wrong_password_without_a_key_is_an_auth_error(sftp_endpoint: Endpoint) -> None:
    with pytest.raises(RemoteError) as refused:
        connect(replace(sftp_endpoint, private_key=None, password="wrong-password"))
    assert refused.value.kind == "auth"
    assert "tried password" in str(refused.value)


def test_sftp_accepts_a_pkcs8_pem_key(sftp_endpoint: Endpoint) -> None:
    assert sftp_endpoint.private_key is not None
    key = serialization.load_ssh_private_key(sftp_endpoint.private_key.encode(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert pkcs8.startswith("-----BEGIN PRIVATE KEY-----")
    assert len(list_files_with_retries(replace(sftp_endpoint, private_key=pkcs8))) == len(SAMPLE_FILES)


def test_an_unreadable_private_key_is_an_auth_error_that_does_not_echo_it() -> None:
    with pytest.raises(RemoteError) as bad:
        load_private_key(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXRleHQ=\n-----END OPENSSH PRIVATE KEY-----"
        )
    assert bad.value.kind == "auth"
    assert "c2VjcmV0LXRleHQ" not in str(bad.value)


def test_endpoint_repr_never_shows_secrets(sftp_endpoint: Endpoint) -> None:
    endpoint = replace(sftp_endpoint, password="hunter2-secret")
    text = repr(endpoint) + str(endpoint)
    assert "hunter2-secret" not in text
    assert "PRIVATE KEY" not in text
    assert "password=<set>" in text
    assert "private_key=<set>" in text


# --------------------------------------------------------------------------- SFTP host keys


def test_an_unknown_host_key_is_refused_with_the_offered_fingerprint_and_accepting_it_works(
    sftp_endpoint: Endpoint, sftp_server: SshServer
) -> None:
    sleeps = Sleeps()
    with pytest.raises(RemoteError) as unknown:
        list_files_with_retries(replace(sftp_endpoint, host_key=None), sleep=sleeps)
    error = unknown.value
    assert error.kind == "host_key"
    assert sleeps.delays == []
    assert error.offered_fingerprint == sftp_server.host_fingerprint
    assert error.offered_key == sftp_server.host_key_line
    assert f"SFTP host key for 127.0.0.1:{sftp_server.port} is not pinned yet" in str(error)
    assert sftp_server.host_fingerprint in str(error)
    # The operator checks the fingerprint and accepts it.
    accepted = replace(sftp_endpoint, host_key=error.offered_fingerprint)
    assert len(list_files_with_retries(accepted)) == len(SAMPLE_FILES)


def test_a_wrong_pinned_key_is_refused_before_any_login(
    sftp_endpoint: Endpoint, sftp_server: SshServer
) -> None:
    _, other_line = make_ed25519_key("impostor")
    # A wrong client key too: the host key must be checked before credentials are offered.
    wrong_private, _ = make_ed25519_key()
    sleeps = Sleeps()
    with pytest.raises(RemoteError) as mismatch:
        list_files_with_retries(
            replace(sftp_endpoint, host_key=other_line, private_key=wrong_private), sleep=sleeps
        )
    error = mismatch.value
    assert error.kind == "host_key"
    assert sleeps.delays == []
    assert error.offered_fingerprint == sftp_server.host_fingerprint
    assert str(error).startswith(
        f"SFTP host key for 127.0.0.1:{sftp_server.port} is not the pinned key "
        f"(offered {sftp_server.host_fingerprint}; pinned {host_key_fingerprint(other_line)})"
    )


def test_the_pin_may_be_a_key_line_a_fingerprint_or_several(
    sftp_endpoint: Endpoint, sftp_server: SshServer
) -> None:
    _, other_line = make_ed25519_key()
    pins = [
        sftp_server.host_key_line,
        sftp_server.host_key_line + " backup-server",
        f"[127.0.0.1]:{sftp_server.port} {sftp_server.host_key_line}",  # a known_hosts line
        sftp_server.host_fingerprint,
        sftp_server.host_fingerprint + "=",
        f"{other_line}\n# rotated next month:\n{sftp_server.host_fingerprint}\n",
    ]
    for pin in pins:
        assert len(list_files_with_retries(replace(sftp_endpoint, host_key=pin))) == len(SAMPLE_FILES), pin


def test_a_malformed_pin_is_rejected_when_the_endpoint_is_made(sftp_endpoint: Endpoint) -> None:
    for pin in ["SHA256:tooshort", "ssh-ed25519 not-base64!", "AAAAC3NzaC1lZDI1NTE5AAAAI"]:
        with pytest.raises(ValueError, match=r"SHA256|OpenSSH"):
            replace(sftp_endpoint, host_key=pin)
    assert parse_host_key_pins("SHA256:" + "A" * 43) == ("SHA256:" + "A" * 43,)


def test_fetch_host_key_shows_the_key_without_logging_in(
    sftp_endpoint: Endpoint, sftp_server: SshServer
) -> None:
    anonymous = replace(sftp_endpoint, username="nobody-here", private_key=None, host_key=None)
    assert fetch_host_key(anonymous) == (sftp_server.host_key_line, sftp_server.host_fingerprint)
    with connect(sftp_endpoint) as client:
        assert isinstance(client, SftpClient)
        assert client.fetch_host_key() == (sftp_server.host_key_line, sftp_server.host_fingerprint)


# --------------------------------------------------------------------------- FTPS certificates


def test_ftps_with_an_untrusted_certificate_is_a_tls_error(ftps_endpoint: Endpoint, tmp_path: Path) -> None:
    other_cert, _ = make_certificate(tmp_path, "other")
    for untrusted in (replace(ftps_endpoint, ca_file=None), replace(ftps_endpoint, ca_file=str(other_cert))):
        sleeps = Sleeps()
        with pytest.raises(RemoteError) as refused:
            list_files_with_retries(untrusted, sleep=sleeps)
        assert refused.value.kind == "tls"
        assert sleeps.delays == []
        assert f"TLS certificate of FTPS server 127.0.0.1:{ftps_endpoint.port} is not trusted" in str(
            refused.value
        )


def test_ftps_without_verification_still_encrypts(ftps_endpoint: Endpoint) -> None:
    # The server still refuses clear text, so the channels are encrypted, merely unauthenticated.
    unverified = replace(ftps_endpoint, ca_file=None, tls_verify=False)
    assert len(list_files_with_retries(unverified)) == len(SAMPLE_FILES)


def test_plain_ftp_to_a_server_that_requires_tls_is_refused(ftps_server: FtpServer) -> None:
    plain = replace(ftp_endpoint_for(ftps_server), protocol="ftp", ca_file=None)
    with pytest.raises(RemoteError) as refused:
        connect(plain)
    assert refused.value.kind == "auth"
    assert "SSL/TLS required" in str(refused.value)


# --------------------------------------------------------------------------- connection failures and retries


@pytest.mark.parametrize("protocol", ["ftp", "ftps", "sftp"])
def test_connection_refused_is_retried_with_exponential_backoff(protocol: RemoteProtocol) -> None:
    endpoint = Endpoint(
        protocol=protocol,
        host="127.0.0.1",
        port=free_port(),  # nothing listens there
        username="u",
        password="p",
        retries=3,
        backoff=0.5,
        allowed_networks=LOOPBACK,
    )
    sleeps = Sleeps()
    with pytest.raises(RemoteError) as refused:
        list_files_with_retries(endpoint, sleep=sleeps)
    assert refused.value.kind == "connect"
    assert refused.value.retryable
    assert refused.value.attempts == 4
    assert f"127.0.0.1:{endpoint.port}: connection refused" in str(refused.value)
    assert len(sleeps.delays) == 3
    for retry, delay in enumerate(sleeps.delays):
        assert 0.5 * 2**retry * 0.5 <= delay <= 0.5 * 2**retry


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_delay(1.0, retry) for retry in range(12)]
    assert all(0.5 * 2**r <= d <= 2**r for r, d in enumerate(delays[:8]))
    assert max(delays) <= 300


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_a_server_that_accepts_but_never_answers_times_out(protocol: RemoteProtocol) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = Endpoint(
            protocol=protocol,
            host="127.0.0.1",
            port=silent.getsockname()[1],
            username="u",
            password="p",
            read_timeout=0.3,
            connect_timeout=0.3,
            retries=1,
            allowed_networks=LOOPBACK,
        )
        sleeps = Sleeps()
        with pytest.raises(RemoteError) as silent_error:
            list_files_with_retries(endpoint, sleep=sleeps)
    assert silent_error.value.kind == "connect"
    assert "0.3 s" in str(silent_error.value)
    assert len(sleeps.delays) == 1


def test_with_retries_returns_the_first_success() -> None:
    endpoint = Endpoint(protocol="ftp", host="example.invalid", port=21, username="u", retries=3, backoff=0.1)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RemoteError("io", "dropped")
        return "done"

    sleeps = Sleeps()
    assert with_retries(flaky, endpoint=endpoint, sleep=sleeps) == "done"
    assert len(calls) == 3
    assert len(sleeps.delays) == 2


# --------------------------------------------------------------------------- servers going away mid-transfer


@pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
def test_ftp_server_killed_mid_download_is_retried_and_the_file_is_complete(
    tls: bool, ftp_server_factory: Callable[..., FtpServer], tmp_path: Path
) -> None:
    # Throttled to 64 KiB/s, so the kill lands early in a 1 MiB file whatever the buffers hold.
    server = ftp_server_factory(throttle=64 * 1024, tls=tls)
    content = os.urandom(1024 * 1024)
    (server.home / "big.slg_v2").write_bytes(content)
    endpoint = ftp_endpoint_for(server)
    remote = next(f for f in list_files_with_retries(endpoint) if f.name == "big.slg_v2")
    killed_at: list[int] = []

    def kill_once(received: int) -> None:
        if not killed_at and received >= 16 * 1024:
            killed_at.append(received)
            server.kill()

    def restart() -> None:
        assert server.process is not None and server.process.poll() is not None  # really gone
        server.throttle = 0  # the second attempt need not crawl
        server.start()

    sleeps = Sleeps(restart)
    dest = tmp_path / "big.slg_v2"
    result = download_with_retries(endpoint, remote, dest, sleep=sleeps, progress=kill_once)
    assert killed_at
    assert len(sleeps.delays) == 1
    assert result.size == len(content)
    assert result.sha256 == sha(content)
    assert dest.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["big.slg_v2"]


def test_sftp_session_killed_mid_download_is_retried_and_the_file_is_complete(
    sftp_endpoint: Endpoint, sftp_server: SshServer, tmp_path: Path
) -> None:
    # Bigger than SSH's flow-control window, so most of it is still on the server at the kill.
    content = os.urandom(8 * 1024 * 1024)
    (sftp_server.files / "big.slg_v2").write_bytes(content)
    try:
        remote = next(f for f in list_files_with_retries(sftp_endpoint) if f.name == "big.slg_v2")
        killed: list[int] = []

        def kill_session_once(received: int) -> None:
            if not killed and received >= 256 * 1024:
                killed.append(sftp_server.kill_sessions())

        sleeps = Sleeps()
        dest = tmp_path / "big.slg_v2"
        result = download_with_retries(sftp_endpoint, remote, dest, sleep=sleeps, progress=kill_session_once)
        assert killed and killed[0] >= 1  # a real session process was killed
        assert len(sleeps.delays) == 1
        assert result.sha256 == sha(content)
        assert dest.read_bytes() == content
        assert [p.name for p in tmp_path.iterdir()] == ["big.slg_v2"]
    finally:
        (sftp_server.files / "big.slg_v2").unlink()


def test_sshd_restarted_on_the_same_port_serves_again(
    sftp_endpoint: Endpoint, sftp_server: SshServer
) -> None:
    sftp_server.stop()
    assert sftp_server.process is not None and sftp_server.process.poll() is not None
    with pytest.raises(RemoteError) as down:
        connect(replace(sftp_endpoint, retries=0))
    assert down.value.kind == "connect"
    sftp_server.start()
    assert len(list_files_with_retries(sftp_endpoint)) == len(SAMPLE_FILES)


def test_no_server_process_or_session_is_left_running(
    sftp_endpoint: Endpoint, sftp_server: SshServer
) -> None:
    with connect(sftp_endpoint) as client:
        client.list_files()
        assert sftp_server.session_pids()
    # Closing the client ends its sshd session processes.
    for _ in range(100):
        if not sftp_server.session_pids():
            break
        time.sleep(0.05)
    assert sftp_server.session_pids() == set()
