"""Clients for the remote servers that meter files arrive on: FTP, explicit FTPS and SFTP.

Pure Python (no Django). `connect(endpoint)` opens a session and returns a `RemoteClient`
(a context manager) that lists the matching files of one directory and streams a file into
a binary file object while hashing it. Every failure is a `RemoteError` whose `kind` says
what went wrong and whether trying again can help (`connect` and `io` can; `auth`,
`host_key`, `tls`, `not_found` and `protocol` cannot). `with_retries` retries with
exponential backoff and jitter; `download_with_retries` downloads into `<dest>.part` and
renames it only when the whole file has arrived.

Where a client may connect is checked at connect time (`ingestion/addresses.py`): the host
name is resolved once, every address it resolves to is checked against the endpoint's
`allowed_networks` (link-local and metadata addresses are refused always, loopback and private
ones unless allowed), and the connection goes to a checked address; FTP data connections go
to the control connection's peer, never to an address the server names. A refusal is kind
`address`.

What a server says (a reply, a banner, an SFTP status text) is kept apart from our own words:
`RemoteError.reply`, cut to `REPLY_MAX_CHARS` with control characters removed, so that it can be
shown to operators only.

SFTP host keys are pinned with `Endpoint.host_key`: one entry per line, each either an
OpenSSH public key line (`ssh-ed25519 AAAA... [comment]`, a known_hosts line is accepted
too) or its SHA256 fingerprint as `ssh-keygen -l` prints it (`SHA256:...`). With no pin
every key is refused; the error carries the offered key and fingerprint so that an operator
can check it and pin it (`fetch_host_key` shows it without logging in). No SSH agent,
~/.ssh or known_hosts file is ever consulted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fnmatch
import ftplib
import hashlib
import io
import ipaddress
import logging
import os
import posixpath
import random
import re
import socket
import ssl
import stat
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, Protocol, Self, TypeVar, get_args

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ingestion.addresses import IPNetwork, address_refusal, host_problem

logger = logging.getLogger(__name__)

RemoteProtocol = Literal["ftp", "ftps", "sftp"]
ErrorKind = Literal["connect", "auth", "host_key", "tls", "io", "not_found", "protocol", "address"]
RETRYABLE_KINDS: frozenset[str] = frozenset({"connect", "io"})
DEFAULT_PATTERNS: tuple[str, ...] = ("*.slg_v2", "*.sgl_v2")
DEFAULT_PORTS: dict[str, int] = {"ftp": 21, "ftps": 21, "sftp": 22}
CHUNK_SIZE = 64 * 1024
# A server that is down for an hour must not make one attempt wait longer than this.
MAX_BACKOFF_S = 300.0
# What a server said is kept to this many characters: enough to tell one reply from another,
# too little to fill a page (a banner can be kilobytes).
REPLY_MAX_CHARS = 200
# The resolver; a module attribute so that tests can hand names to a test double.
getaddrinfo = socket.getaddrinfo

T = TypeVar("T")
ProgressCallback = Callable[[int], None]


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class RemoteFile:
    """One file in a remote directory, as listed."""

    path: str
    name: str
    size: int
    mtime: datetime | None = None


@dataclass(frozen=True)
class DownloadResult:
    """What one complete download delivered: byte count, SHA-256 (hex) and seconds taken."""

    size: int
    sha256: str
    duration: float


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one remote directory; `__repr__` never shows the secrets."""

    protocol: RemoteProtocol
    host: str
    port: int
    username: str
    password: str = field(default="", repr=False)
    private_key: str | None = field(default=None, repr=False)
    remote_path: str = "/"
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    host_key: str | None = None
    ca_file: str | None = None
    tls_verify: bool = True
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0
    # Networks that are not public but may be connected to (loopback, a LAN); none by default.
    allowed_networks: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        if self.protocol not in get_args(RemoteProtocol):
            raise ValueError(f"protocol must be one of ftp, ftps, sftp (got {self.protocol!r})")
        if not self.host:
            raise ValueError("host is required")
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"port must be 1-65535 (got {self.port})")
        if self.retries < 0 or self.backoff < 0:
            raise ValueError("retries and backoff must not be negative")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        # Frozen, but a list or a single string from a form is still meant as patterns.
        patterns = (self.patterns,) if isinstance(self.patterns, str) else tuple(self.patterns)
        object.__setattr__(self, "patterns", patterns)
        if self.host_key is not None and self.host_key.strip():
            parse_host_key_pins(self.host_key)  # a typo in the pin fails here, not at 3 a.m.

    @property
    def address(self) -> str:
        """host:port, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __repr__(self) -> str:
        return (
            f"Endpoint(protocol={self.protocol!r}, host={self.host!r}, port={self.port!r}, "
            f"username={self.username!r}, password={'<set>' if self.password else '<empty>'}, "
            f"private_key={'<set>' if self.private_key else None}, remote_path={self.remote_path!r}, "
            f"patterns={self.patterns!r}, host_key={self.host_key!r}, ca_file={self.ca_file!r}, "
            f"tls_verify={self.tls_verify!r})"
        )

    def matches(self, name: str) -> bool:
        """Whether a file name matches one of the patterns (case-insensitive: servers differ)."""
        lowered = name.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in self.patterns)


class RemoteError(Exception):
    """A remote operation failed; `kind` classifies it and `retryable` says whether to try again."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reply: str = "",
        offered_key: str | None = None,
        offered_fingerprint: str | None = None,
    ) -> None:
        # `message` is in our words; `reply` is what the server said, which it chooses freely.
        self.message = message
        self.reply = server_text(reply)
        super().__init__(str(self))
        self.kind: ErrorKind = kind
        # Set for host-key refusals, so that the admin can show the key to accept.
        self.offered_key = offered_key
        self.offered_fingerprint = offered_fingerprint
        # with_retries records how many attempts were made before giving up.
        self.attempts = 1

    @property
    def retryable(self) -> bool:
        """Whether another attempt can succeed (a dropped connection) or cannot (a wrong password)."""
        return self.kind in RETRYABLE_KINDS

    def __str__(self) -> str:
        return f"{self.message}: {self.reply}" if self.reply else self.message


def server_text(text: str, limit: int = REPLY_MAX_CHARS) -> str:
    """Text a server chose, fit to show: control and formatting characters (escape sequences,
    bidirectional overrides, line breaks) become spaces, and it is cut to `limit` characters."""
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "\u2026"


class RemoteClient(Protocol):
    """An open session on one endpoint; close it (or use it as a context manager)."""

    endpoint: Endpoint

    def list_files(self) -> list[RemoteFile]:
        """The files of `endpoint.remote_path` (not recursive) matching its patterns, by name."""
        ...

    def download(
        self, remote: RemoteFile, dest: BinaryIO, *, progress: ProgressCallback | None = None
    ) -> DownloadResult:
        """Stream a file into `dest`, hashing it; a short or broken transfer raises kind "io"."""
        ...

    def close(self) -> None:
        """End the session; never raises."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


# --------------------------------------------------------------------------- public helpers


def connect(endpoint: Endpoint) -> RemoteClient:
    """Open a logged-in session on the endpoint with the client its protocol needs."""
    client: FtpClient | SftpClient = (
        SftpClient(endpoint) if endpoint.protocol == "sftp" else FtpClient(endpoint)
    )
    client.open()
    return client


def backoff_delay(backoff: float, retry: int) -> float:
    """Seconds to wait before retry number `retry` (0-based): backoff * 2**retry, jittered to 50-100%."""
    base: float = min(backoff * (2**retry), MAX_BACKOFF_S)
    # Jitter spreads the retries of many sources that failed together; not security-relevant.
    return base * random.uniform(0.5, 1.0)  # noqa: S311


def with_retries(
    fn: Callable[[], T], *, endpoint: Endpoint, sleep: Callable[[float], object] = time.sleep
) -> T:
    """Call fn, retrying retryable RemoteErrors up to `endpoint.retries` times with backoff."""
    attempts = endpoint.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except RemoteError as exc:
            exc.attempts = attempt
            if not exc.retryable or attempt == attempts:
                raise
            delay = backoff_delay(endpoint.backoff, attempt - 1)
            logger.warning("%s (attempt %d of %d); retrying in %.1f s", exc, attempt, attempts, delay)
            sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def list_files_with_retries(
    endpoint: Endpoint, *, sleep: Callable[[float], object] = time.sleep
) -> list[RemoteFile]:
    """List the endpoint's matching files, reconnecting on retryable failures."""

    def attempt() -> list[RemoteFile]:
        with connect(endpoint) as client:
            return client.list_files()

    return with_retries(attempt, endpoint=endpoint, sleep=sleep)


def download_with_retries(
    endpoint: Endpoint,
    remote: RemoteFile,
    dest_path: str | os.PathLike[str],
    *,
    sleep: Callable[[float], object] = time.sleep,
    progress: ProgressCallback | None = None,
) -> DownloadResult:
    """Download into `dest_path`.part, retrying from scratch; rename to dest_path only when complete."""
    final = Path(dest_path)
    part = final.with_name(final.name + ".part")

    def attempt() -> DownloadResult:
        try:
            # "wb" truncates whatever an earlier attempt left.
            with part.open("wb") as fh:
                with connect(endpoint) as client:
                    result = client.download(remote, fh, progress=progress)
                fh.flush()
                os.fsync(fh.fileno())
            if part.stat().st_size != result.size:
                raise RemoteError("io", f"{part} holds {part.stat().st_size} bytes, expected {result.size}")
            part.replace(final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return result

    return with_retries(attempt, endpoint=endpoint, sleep=sleep)


def fetch_host_key(endpoint: Endpoint) -> tuple[str, str]:
    """The SFTP server's host key as (OpenSSH key line, SHA256 fingerprint), without logging in."""
    if endpoint.protocol != "sftp":
        raise ValueError("only SFTP servers have host keys")
    transport = _ssh_handshake(endpoint)
    try:
        key = transport.get_remote_server_key()
        return _key_line(key), key.fingerprint
    finally:
        transport.close()


def host_key_fingerprint(key_line: str) -> str:
    """The SHA256 fingerprint (as `ssh-keygen -l` prints it) of an OpenSSH public key line."""
    return _fingerprint(_key_blob(key_line))


def parse_host_key_pins(text: str) -> tuple[str, ...]:
    """The SHA256 fingerprints a host_key setting pins (one key line or fingerprint a line)."""
    pins: list[str] = []
    for raw in text.splitlines():
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry[:7].upper() == "SHA256:":
            encoded = entry[7:].strip().rstrip("=")
            try:
                digest = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            except (binascii.Error, ValueError):
                digest = b""
            if len(digest) != 32:
                raise ValueError(f"{entry!r} is not a SHA256 fingerprint like SHA256:AbC...")
            pins.append(f"SHA256:{encoded}")
        else:
            pins.append(_fingerprint(_key_blob(entry)))
    if not pins:
        raise ValueError("the host key pin is empty")
    return tuple(pins)


# --------------------------------------------------------------------------- FTP and FTPS


class _SessionReusingFTP_TLS(ftplib.FTP_TLS):
    # Many FTPS servers (vsftpd, FileZilla) refuse a data connection that does not resume the
    # control connection's TLS session, so that nobody else can steal the transfer.
    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 (plain FTP is a supported protocol)
        # FTP_TLS's flag for PROT P (private data connections), which typeshed does not declare.
        if self._prot_p:  # type: ignore[attr-defined]
            session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """The TLS context for an FTPS endpoint: verify against ca_file (or the system store) unless told not."""
    try:
        context = ssl.create_default_context(cafile=endpoint.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a PEM certificate bundle"
        raise RemoteError("tls", f"the CA file {endpoint.ca_file} cannot be used: {reason}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not endpoint.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class FtpClient:
    """A logged-in FTP or explicit-FTPS session (ftplib), binary mode, passive data connections."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._ftp: ftplib.FTP | None = None
        self._mlsd = False
        self._directory = "/"
        self._broken = False

    @property
    def _label(self) -> str:
        return "FTPS" if self.endpoint.protocol == "ftps" else "FTP"

    def open(self) -> None:
        """Connect, secure (FTPS), log in and learn the server's features."""
        ep = self.endpoint
        ftp: ftplib.FTP = (
            _SessionReusingFTP_TLS(context=tls_context(ep))
            if ep.protocol == "ftps"
            # Plain FTP is what many meter servers offer; operators choose FTPS or SFTP where they can.
            else ftplib.FTP()  # noqa: S321
        )
        # Data connections go to the control connection's peer (the checked address), never to
        # the address a PASV reply names (ftplib's default, stated here because it is relied on).
        # (A class attribute of ftplib.FTP that typeshed does not declare.)
        ftp.trust_server_pasv_ipv4_address = False  # type: ignore[attr-defined]
        self._ftp = ftp
        try:
            self._connect(ftp)
            # Every later wait, including data connections, gets the read timeout.
            ftp.timeout = ep.read_timeout
            assert ftp.sock is not None  # connected just above
            ftp.sock.settimeout(ep.read_timeout)
            if isinstance(ftp, ftplib.FTP_TLS):
                self._secure_control(ftp)
            self._login(ftp)
            if isinstance(ftp, ftplib.FTP_TLS):
                try:
                    ftp.prot_p()
                except ftplib.Error as exc:
                    raise RemoteError(
                        "tls", f"FTPS server {ep.address} refused to protect the data channel", reply=str(exc)
                    ) from exc
            ftp.voidcmd("TYPE I")
            self._mlsd = self._supports_mlsd(ftp)
            try:
                home = ftp.pwd()
            except ftplib.error_perm:
                home = "/"
            self._directory = posixpath.normpath(posixpath.join(home or "/", ep.remote_path or "."))
        except RemoteError:
            self.close()
            raise
        except (OSError, EOFError, ftplib.Error) as exc:
            self.close()
            raise self._failure(exc, "setting up the session", phase="connect") from exc

    def _connect(self, ftp: ftplib.FTP) -> None:
        ep = self.endpoint
        checked = resolve(ep.host, ep.port, ep.allowed_networks, label=f"{self._label} server")
        failure: BaseException | None = None
        for _, sockaddr in checked:
            # An address, not the name: ftplib would resolve the name again, and DNS may answer
            # differently the second time.
            try:
                ftp.connect(sockaddr[0], ep.port, timeout=ep.connect_timeout)
            except (OSError, EOFError, ftplib.Error) as exc:
                failure = exc
                if ftp.sock is None:
                    continue  # that address did not answer: try the name's next one
                break  # it answered, then failed: the server's doing, not the address's
            failure = None
            break
        if failure is not None:
            ours, said = _describe(failure, ep)
            raise RemoteError(
                "connect", f"cannot connect to {self._label} server {ep.address}: {ours}", reply=said
            ) from failure
        # The name, for TLS: certificates are checked against it, and SNI sends it.
        ftp.host = ep.host

    def _secure_control(self, ftp: ftplib.FTP_TLS) -> None:
        ep = self.endpoint
        try:
            ftp.auth()
        except ssl.SSLCertVerificationError as exc:
            raise RemoteError(
                "tls",
                f"the TLS certificate of FTPS server {ep.address} is not trusted ({exc.verify_message}); "
                "set the source's CA file to the certificate that signs it",
            ) from exc
        except ssl.SSLError as exc:
            raise RemoteError("tls", f"TLS handshake with FTPS server {ep.address} failed: {exc}") from exc
        except ftplib.error_perm as exc:
            raise RemoteError(
                "tls", f"FTP server {ep.address} does not offer explicit TLS (AUTH TLS)", reply=str(exc)
            ) from exc

    def _login(self, ftp: ftplib.FTP) -> None:
        ep = self.endpoint
        try:
            ftp.login(ep.username, ep.password)
        except ftplib.error_perm as exc:
            raise RemoteError(
                "auth",
                f"{self._label} login as {ep.username!r} on {ep.address} was refused",
                reply=_reply(exc),
            ) from exc
        except ftplib.error_temp as exc:
            # 421: too many connections, shutting down; worth another try later.
            raise RemoteError(
                "connect", f"{self._label} server {ep.address} is not taking logins now", reply=_reply(exc)
            ) from exc

    @staticmethod
    def _supports_mlsd(ftp: ftplib.FTP) -> bool:
        try:
            features = ftp.sendcmd("FEAT")
        except ftplib.Error:
            return False
        # RFC 3659: a server that implements MLSD announces the MLST feature.
        return any(line.strip().upper().startswith("MLST") for line in features.splitlines()[1:])

    def list_files(self) -> list[RemoteFile]:
        """The matching plain files of the remote directory, sorted by name."""
        ftp = self._session()
        try:
            files = None
            if self._mlsd:
                files = self._list_mlsd(ftp)
                if files is None:
                    self._mlsd = False
            if files is None:
                files = self._list_nlst(ftp)
        except RemoteError:
            raise
        except (OSError, EOFError, ftplib.Error) as exc:
            self._broken = True
            raise self._failure(exc, f"listing {_shown(self._directory)}") from exc
        return sorted(files, key=lambda f: f.name)

    def _list_mlsd(self, ftp: ftplib.FTP) -> list[RemoteFile] | None:
        try:
            entries = list(ftp.mlsd(self._directory, facts=["type", "size", "modify"]))
        except ftplib.error_perm as exc:
            if _code(exc) in {"500", "501", "502", "504"}:
                return None  # announced but not really there: fall back to NLST
            raise
        # ftplib lists in ASCII mode, and servers answer SIZE only in binary mode.
        ftp.voidcmd("TYPE I")
        files = []
        for raw_name, facts in entries:
            name = posixpath.basename(raw_name.rstrip("/"))
            if facts.get("type", "file").lower() != "file" or not self.endpoint.matches(name):
                continue
            path = posixpath.join(self._directory, name)
            size = int(facts["size"]) if facts.get("size", "").isdigit() else ftp.size(path)
            if size is None:
                continue
            files.append(RemoteFile(path, name, int(size), _parse_ftp_time(facts.get("modify"))))
        return files

    def _list_nlst(self, ftp: ftplib.FTP) -> list[RemoteFile]:
        # CWD first: NLST answers 550 both for a missing directory and (on some servers) an
        # empty one, so only CWD tells them apart.
        ftp.cwd(self._directory)
        try:
            names = ftp.nlst()
        except (ftplib.error_perm, ftplib.error_temp) as exc:
            if _code(exc) in {"450", "550"}:
                names = []
            else:
                raise
        ftp.voidcmd("TYPE I")  # as above: SIZE needs binary mode
        files = []
        for raw_name in names:
            name = posixpath.basename(raw_name.rstrip("/"))
            if not name or not self.endpoint.matches(name):
                continue
            path = posixpath.join(self._directory, name)
            try:
                size = ftp.size(path)
            except ftplib.error_perm:
                continue  # a directory or something else that cannot be retrieved
            if size is None:
                continue
            try:
                mtime = _parse_ftp_time(ftp.sendcmd(f"MDTM {path}")[4:].strip())
            except ftplib.error_perm:
                mtime = None
            files.append(RemoteFile(path, name, int(size), mtime))
        return files

    def download(
        self, remote: RemoteFile, dest: BinaryIO, *, progress: ProgressCallback | None = None
    ) -> DownloadResult:
        """RETR the file into dest in chunks, hashing as it streams."""
        ftp = self._session()
        digest = hashlib.sha256()
        received = 0
        started = time.monotonic()

        def on_chunk(chunk: bytes) -> None:
            nonlocal received
            dest.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if progress is not None:
                progress(received)

        try:
            ftp.retrbinary(f"RETR {remote.path}", on_chunk, blocksize=CHUNK_SIZE)
        except (OSError, EOFError, ftplib.Error) as exc:
            self._broken = True
            raise self._failure(
                exc, f"downloading {_shown(remote.path)}", phase="io", received=received
            ) from exc
        return _result(self.endpoint, remote, received, digest, started)

    def _session(self) -> ftplib.FTP:
        if self._ftp is None or self._broken:
            raise RemoteError("io", f"the {self._label} session to {self.endpoint.address} is closed")
        return self._ftp

    def _failure(  # noqa: PLR0911 (one return per reply class reads best)
        self, exc: BaseException, doing: str, *, phase: Literal["connect", "io"] = "io", received: int = 0
    ) -> RemoteError:
        ep = self.endpoint
        where = f"{self._label} server {ep.address}"
        after = f" after {received} bytes" if received else ""
        if isinstance(exc, ftplib.error_perm):
            code = _code(exc)
            if code == "530":
                return RemoteError("auth", f"{where} refused {doing}", reply=_reply(exc))
            if code in {"550", "553", "450"}:
                return RemoteError(
                    "not_found", f"{where}: {doing} failed, not found or not allowed", reply=_reply(exc)
                )
            return RemoteError("protocol", f"{where} rejected {doing}", reply=_reply(exc))
        if isinstance(exc, ftplib.error_temp):
            kind: ErrorKind = "connect" if _code(exc) == "421" else "io"
            return RemoteError(kind, f"{where}: {doing} failed{after}", reply=_reply(exc))
        if isinstance(exc, ftplib.Error):
            return RemoteError("protocol", f"{where} sent an unexpected reply while {doing}", reply=str(exc))
        if isinstance(exc, ssl.SSLCertVerificationError):
            return RemoteError("tls", f"{where}: the TLS certificate was not accepted while {doing}: {exc}")
        ours, said = _describe(exc, ep)
        return RemoteError(phase, f"{where}: {doing} failed{after}: {ours}", reply=said)

    def close(self) -> None:
        """QUIT politely when the session is healthy; always close the socket."""
        ftp, self._ftp = self._ftp, None
        if ftp is None:
            return
        if not self._broken and ftp.sock is not None:
            with contextlib.suppress(OSError, EOFError, ftplib.Error):
                ftp.quit()
        with contextlib.suppress(OSError):
            ftp.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._broken = True  # do not wait on QUIT after a failure
        self.close()


# --------------------------------------------------------------------------- SFTP


class SftpClient:
    """A logged-in SFTP session (paramiko Transport + SFTPClient) on a pinned host key."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._directory = "/"
        # (key line, fingerprint) of the server this session talks to.
        self.server_key: tuple[str, str] | None = None

    def open(self) -> None:
        """Handshake, check the host key against the pin, authenticate, start SFTP."""
        ep = self.endpoint
        transport = _ssh_handshake(ep)
        self._transport = transport
        try:
            key = transport.get_remote_server_key()
            self.server_key = (_key_line(key), key.fingerprint)
            _check_host_key(ep, key)
            _authenticate(ep, transport)
            try:
                sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise RemoteError(
                    "protocol", f"SSH server {ep.address} did not start the SFTP subsystem", reply=str(exc)
                ) from exc
            if sftp is None:
                raise RemoteError("protocol", f"SSH server {ep.address} did not start the SFTP subsystem")
            self._sftp = sftp
            channel = sftp.get_channel()
            assert channel is not None  # an SFTP client opened on a transport has its channel
            channel.settimeout(ep.read_timeout)
            try:
                home = sftp.normalize(".")
            except OSError:
                home = "/"
            self._directory = posixpath.normpath(posixpath.join(home, ep.remote_path or "."))
        except BaseException:
            self.close()
            raise

    def fetch_host_key(self) -> tuple[str, str]:
        """The host key of the server this session is connected to: (key line, fingerprint)."""
        if self.server_key is None:
            raise RemoteError("io", f"the SFTP session to {self.endpoint.address} is closed")
        return self.server_key

    def list_files(self) -> list[RemoteFile]:
        """The matching regular files (or links to them) of the remote directory, sorted by name."""
        sftp = self._session()
        try:
            entries = sftp.listdir_attr(self._directory)
            files = []
            for attr in entries:
                name = attr.filename
                if not self.endpoint.matches(name):
                    continue
                path = posixpath.join(self._directory, name)
                if attr.st_mode is not None and stat.S_ISLNK(attr.st_mode):
                    attr = sftp.stat(path)  # noqa: PLW2901 (follow the link to what it names)
                if attr.st_mode is not None and not stat.S_ISREG(attr.st_mode):
                    continue
                mtime = datetime.fromtimestamp(attr.st_mtime, tz=UTC) if attr.st_mtime is not None else None
                files.append(RemoteFile(path, name, int(attr.st_size or 0), mtime))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._failure(exc, f"listing {_shown(self._directory)}") from exc
        return sorted(files, key=lambda f: f.name)

    def download(
        self, remote: RemoteFile, dest: BinaryIO, *, progress: ProgressCallback | None = None
    ) -> DownloadResult:
        """Read the file with pipelined requests into dest in chunks, hashing as it streams."""
        sftp = self._session()
        digest = hashlib.sha256()
        received = 0
        started = time.monotonic()
        try:
            with sftp.open(remote.path, "rb") as fh:
                if remote.size > 0:
                    # Pipelined reads: one round trip per 32 KiB would crawl over a real WAN.
                    fh.prefetch(remote.size)
                while chunk := fh.read(CHUNK_SIZE):
                    dest.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._failure(exc, f"downloading {_shown(remote.path)}", received=received) from exc
        return _result(self.endpoint, remote, received, digest, started)

    def _session(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            raise RemoteError("io", f"the SFTP session to {self.endpoint.address} is closed")
        return self._sftp

    def _failure(self, exc: BaseException, doing: str, *, received: int = 0) -> RemoteError:
        where = f"SFTP server {self.endpoint.address}"
        if isinstance(exc, OSError) and exc.errno in {errno.ENOENT, errno.EACCES, errno.EPERM}:
            # The text is the server's own status message.
            return RemoteError(
                "not_found", f"{where}: {doing} failed, not found or not allowed", reply=str(exc)
            )
        after = f" after {received} bytes" if received else ""
        ours, said = _describe(exc, self.endpoint)
        return RemoteError("io", f"{where}: {doing} failed{after}: {ours}", reply=said)

    def close(self) -> None:
        """Close SFTP and the SSH connection; never raises."""
        sftp, self._sftp = self._sftp, None
        transport, self._transport = self._transport, None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _ssh_handshake(ep: Endpoint) -> paramiko.Transport:
    sock = _tcp_connect(ep, "SFTP")
    transport = paramiko.Transport(sock)
    transport.banner_timeout = ep.read_timeout
    transport.handshake_timeout = ep.read_timeout
    transport.auth_timeout = ep.read_timeout
    transport.channel_timeout = ep.read_timeout
    if ep.host_key:
        _prefer_pinned_key_types(transport, ep.host_key)
    try:
        transport.start_client(timeout=ep.read_timeout)
    except paramiko.ssh_exception.IncompatiblePeer as exc:  # (the stubs export it only there)
        transport.close()
        raise RemoteError(
            "protocol", f"SSH server {ep.address} shares no algorithms with this client", reply=str(exc)
        ) from exc
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        # paramiko wraps a banner timeout or EOF in an SSHException; the original says which.
        cause = exc.__context__ if "protocol banner" in str(exc) and exc.__context__ else exc
        if isinstance(cause, TimeoutError):
            reason, said = f"no SSH banner within {ep.read_timeout:g} s (is it an SSH server?)", ""
        else:
            # paramiko quotes a banner it cannot read: the server's words.
            reason, said = _describe(cause, ep)
        raise RemoteError("connect", f"SSH handshake with {ep.address} failed: {reason}", reply=said) from exc
    try:
        # start_client returns quietly when its timeout passes before the key exchange ends.
        transport.get_remote_server_key()
    except paramiko.SSHException:
        transport.close()
        raise RemoteError(
            "connect", f"SSH server {ep.address} did not complete the handshake within {ep.read_timeout:g} s"
        ) from None
    return transport


def _prefer_pinned_key_types(transport: paramiko.Transport, pin_text: str) -> None:
    # A server with several host keys shows the one of the first type both sides accept; ask
    # for the pinned key's type first so that a pinned RSA key is compared with the RSA key.
    wanted: list[str] = []
    for raw in pin_text.splitlines():
        key_type = _key_type_of(raw.strip())
        if key_type == "ssh-rsa":
            wanted += ["rsa-sha2-512", "rsa-sha2-256"]
        elif key_type:
            wanted.append(key_type)
    options = transport.get_security_options()
    current = list(options.key_types)
    preferred = [k for k in wanted if k in current]
    if preferred:
        options.key_types = tuple(dict.fromkeys(preferred + current))


def _check_host_key(ep: Endpoint, key: paramiko.PKey) -> None:
    offered_line, offered_fp = _key_line(key), key.fingerprint
    if not (ep.host_key and ep.host_key.strip()):
        raise RemoteError(
            "host_key",
            f"SFTP host key for {ep.address} is not pinned yet, so it is refused (offered {key.get_name()} "
            f"{offered_fp}); check the fingerprint with the server's administrator, then pin it",
            offered_key=offered_line,
            offered_fingerprint=offered_fp,
        )
    pins = parse_host_key_pins(ep.host_key)
    if offered_fp not in pins:
        raise RemoteError(
            "host_key",
            f"SFTP host key for {ep.address} is not the pinned key (offered {offered_fp}; pinned "
            f"{', '.join(pins)}); the server's key changed or someone is in between",
            offered_key=offered_line,
            offered_fingerprint=offered_fp,
        )


def _authenticate(ep: Endpoint, transport: paramiko.Transport) -> None:
    tried: list[str] = []
    try:
        if ep.private_key:
            tried.append("key")
            try:
                transport.auth_publickey(ep.username, load_private_key(ep.private_key))
            except paramiko.AuthenticationException:
                if not ep.password:
                    raise
        # A password follows a refused key, or completes a two-step login (key, then password).
        if not transport.is_authenticated() and (ep.password or not ep.private_key):
            tried.append("password")
            transport.auth_password(ep.username, ep.password)
    except paramiko.BadAuthenticationType as exc:
        raise RemoteError(
            "auth",
            f"SFTP login as {ep.username!r} on {ep.address} was refused: the server accepts only "
            "other methods",
            reply=", ".join(str(t) for t in exc.allowed_types),
        ) from exc
    except paramiko.AuthenticationException as exc:
        raise RemoteError(
            "auth",
            f"SFTP login as {ep.username!r} on {ep.address} was refused (tried {' and '.join(tried)}): "
            "wrong key or password, or the key is not authorized on the server",
        ) from exc
    except (paramiko.SSHException, EOFError, OSError) as exc:
        ours, said = _describe(exc, ep)
        raise RemoteError(
            "connect", f"SSH server {ep.address} dropped the connection during login: {ours}", reply=said
        ) from exc
    if not transport.is_authenticated():
        raise RemoteError(
            "auth", f"SFTP login as {ep.username!r} on {ep.address} needs more than {' and '.join(tried)}"
        )


def load_private_key(text: str) -> paramiko.PKey:
    """A paramiko key from unencrypted PEM text (OpenSSH, PKCS#8 or legacy RSA/EC PEM)."""
    data = text.strip().encode() + b"\n"
    try:
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except ValueError:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # Never echo the text: it is a secret even when it is malformed.
        raise RemoteError(
            "auth",
            "the SFTP private key could not be read: expected an unencrypted OpenSSH or PEM private key "
            f"({type(exc).__name__})",
        ) from None
    key_classes: Iterable[tuple[type, type[paramiko.PKey]]] = (
        (ed25519.Ed25519PrivateKey, paramiko.Ed25519Key),
        (rsa.RSAPrivateKey, paramiko.RSAKey),
        (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey),
    )
    for crypto_type, paramiko_type in key_classes:
        if isinstance(key, crypto_type):
            # paramiko's Ed25519 loader reads only the OpenSSH format, so hand every key over in it.
            openssh = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ).decode()
            return paramiko_type.from_private_key(io.StringIO(openssh))
    raise RemoteError("auth", f"SFTP private keys of type {type(key).__name__} are not supported")


def _key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def _fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


_KEY_TYPE = re.compile(r"^(ssh-|ecdsa-|sk-)[a-z0-9@.\-]+$")


def _key_type_of(entry: str) -> str | None:
    for word in entry.split():
        if _KEY_TYPE.match(word):
            return word
    return None


def _key_blob(entry: str) -> bytes:
    words = entry.split()
    # "type base64 [comment]", or a known_hosts line with host patterns in front.
    for i, word in enumerate(words[:-1]):
        if _KEY_TYPE.match(word):
            try:
                blob = base64.b64decode(words[i + 1], validate=True)
            except (binascii.Error, ValueError):
                break
            if len(blob) < 4:
                break
            length = int.from_bytes(blob[:4], "big")
            if blob[4 : 4 + length].decode("ascii", "replace") != word:
                raise ValueError(f"the key in {entry[:40]!r}... is not of type {word}")
            return blob
    raise ValueError(
        f"{entry[:40]!r} is neither an OpenSSH public key line (ssh-ed25519 AAAA...) nor SHA256:..."
    )


# --------------------------------------------------------------------------- shared


def resolve(
    host: str,
    port: int,
    allowed: tuple[IPNetwork, ...] | list[IPNetwork] = (),
    *,
    label: str = "server",
    lookup: Callable[..., list[tuple[Any, ...]]] | None = None,
) -> list[tuple[int, tuple[Any, ...]]]:
    """(family, sockaddr) of every address `host` resolves to, each checked against the rules
    of `ingestion.addresses`; a name with any refused address is refused whole (kind "address").
    `lookup` is getaddrinfo's stand-in (default: this module's `getaddrinfo`).

    Connect to these, not to the name: a second lookup may answer differently."""
    address_text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    problem = host_problem(host, allowed)
    if problem is not None:
        raise RemoteError("address", f"{label} {address_text} may not be connected to: {problem}")
    try:
        infos = (lookup or getaddrinfo)(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid name"
        raise RemoteError(
            "connect", f"cannot connect to {label} {address_text}: host name {host!r} not found ({reason})"
        ) from exc
    checked: list[tuple[int, tuple[Any, ...]]] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        refusal = address_refusal(address, allowed)
        if refusal is not None:
            raise RemoteError(
                "address",
                f"{label} {address_text} may not be connected to: {host} resolves to {address}, "
                f"which is {refusal}",
            )
        checked.append((family, sockaddr))
    if not checked:
        raise RemoteError("connect", f"cannot connect to {label} {address_text}: {host!r} has no IP address")
    return checked


def _tcp_connect(ep: Endpoint, label: str) -> socket.socket:
    checked = resolve(ep.host, ep.port, ep.allowed_networks, label=f"{label} server")
    failure: OSError | None = None
    for family, sockaddr in checked:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(ep.connect_timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        sock.settimeout(ep.read_timeout)
        return sock
    assert failure is not None  # resolve() returns at least one address
    ours, said = _describe(failure, ep)
    raise RemoteError(
        "connect", f"cannot connect to {label} server {ep.address}: {ours}", reply=said
    ) from failure


def _result(
    ep: Endpoint, remote: RemoteFile, received: int, digest: hashlib._Hash, started: float
) -> DownloadResult:
    if received != remote.size:
        what = "the transfer ended early" if received < remote.size else "the file grew while it was read"
        raise RemoteError(
            "io",
            f"{ep.protocol.upper()} server {ep.address}: {_shown(remote.path)} was listed with "
            f"{remote.size} bytes but {received} arrived ({what})",
        )
    return DownloadResult(size=received, sha256=digest.hexdigest(), duration=time.monotonic() - started)


def _describe(exc: BaseException, ep: Endpoint) -> tuple[str, str]:  # noqa: PLR0911 (one answer per failure)
    """A failure in our words, and the text that came with it (which the server may have
    chosen: an FTP reply, a banner paramiko quotes), to be kept apart as the reply."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and is the port right?)", ""
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within the timeout ({ep.connect_timeout:g} s to connect, "
            f"{ep.read_timeout:g} s to read)",
            "",
        )
    if isinstance(exc, socket.gaierror):
        return f"host name {ep.host!r} not found ({exc.strerror})", ""
    if isinstance(exc, EOFError):
        return "the server closed the connection", ""
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset by the server", ""
    if isinstance(exc, paramiko.SSHException) and "connection dropped" in str(exc).lower():
        return "the server closed the connection", ""
    return type(exc).__name__, str(exc).strip()


def _code(exc: ftplib.Error) -> str:
    return str(exc)[:3]


def _reply(exc: ftplib.Error) -> str:
    return str(exc).strip()


def _shown(path: str) -> str:
    # A path from a listing: the server chose it.
    return server_text(path)


def _parse_ftp_time(value: str | None) -> datetime | None:
    # MLSD "modify" and MDTM: YYYYMMDDHHMMSS[.sss], always UTC (RFC 3659).
    if not value or len(value) < 14 or not value[:14].isdigit():
        return None
    try:
        moment = datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    fraction = value[14:]
    if fraction.startswith(".") and fraction[1:].isdigit():
        moment += timedelta(seconds=float(f"0{fraction}"))
    return moment
