"""Real FTP, explicit-FTPS and SFTP servers on 127.0.0.1 for the remote-client tests.

FTP and FTPS are pyftpdlib, run in a subprocess (this file is its entry point) so that a
test can kill it in the middle of a transfer and start it again on the same port. SFTP is
OpenSSH's own sshd on a high port with throwaway host and client keys. Every server runs in
its own process group with a parent-death signal, so nothing outlives the test run.

This module is also executed as a script by the FTP subprocess, so its top level imports
only the standard library; project and test-only imports happen inside functions.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0
# RFC 5280's "no well-defined expiration date" (99991231235959Z), from a start long past.
CERTIFICATE_NOT_BEFORE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
CERTIFICATE_NOT_AFTER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- key material


def make_certificate(directory: Path, name: str = "ftps") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key) PEM paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"energy-dashboard test {name}")])
    public = key.public_key()
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # Valid whatever the date: OpenSSL checks it against the real clock, while the tests' own
        # clock may be shifted (pytest --clock), so a window around "now" would be expired.
        .not_valid_before(CERTIFICATE_NOT_BEFORE)
        .not_valid_after(CERTIFICATE_NOT_AFTER)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        # Self-signed, so it is its own CA: a client can trust exactly this certificate.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}-cert.pem"
    key_path = directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def make_ed25519_key(comment: str = "test") -> tuple[str, str]:
    """A fresh Ed25519 key pair: (private key in OpenSSH PEM, public key line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def openssh_fingerprint(key_line: str) -> str:
    """SHA256 fingerprint of a public key line, computed the way `ssh-keygen -l` does."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# --------------------------------------------------------------------------- process plumbing


def free_port_range(count: int) -> tuple[int, int]:
    """`count` consecutive free ports below Linux's ephemeral range (so clients do not take them)."""
    rng = random.Random()
    for _ in range(50):
        first = rng.randrange(20000, 32000 - count)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + count):
                    probe = stack.enter_context(socket.socket())
                    probe.bind((HOST, port))
        except OSError:
            continue
        return first, first + count - 1
    raise RuntimeError(f"no {count} consecutive free ports found")


def _popen(argv: list[str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    from energy_dashboard.supervisor import die_with_parent

    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            # A file, not a pipe: nobody reads a pipe while the test runs, and it would fill up.
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl)
        )


def _wait_for_banner(
    process: subprocess.Popen[bytes], port: int, prefix: bytes, log_path: Path, what: str
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start (status {process.returncode}):\n{_tail(log_path)}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as probe:
                probe.settimeout(2)
                if probe.recv(256).startswith(prefix):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer on port {port} within {START_TIMEOUT_S:.0f}s")
        time.sleep(0.05)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    # A zombie left to init may never be reaped here; nothing more can be done about it.
    return state == "Z" and _ppid(pid) <= 1


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


# --------------------------------------------------------------------------- FTP and FTPS


class FtpServer:
    """pyftpdlib in a subprocess: one user with a password, a home directory, passive ports."""

    def __init__(
        self,
        root: Path,
        *,
        tls: bool = False,
        throttle: int = 0,
        mlsd: bool = True,
        user: str = "meter",
        password: str = "meter-pass-1",
    ) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.password = password
        self.tls = tls
        # Bytes per second the data channel may send (0: unthrottled); read at each start().
        self.throttle = throttle
        self.mlsd = mlsd
        self.port = _free_port()
        self.passive_ports = free_port_range(20)
        self.log_path = root / "ftpd.log"
        self.certfile: Path | None = None
        self.keyfile: Path | None = None
        if tls:
            self.certfile, self.keyfile = make_certificate(root / "tls")
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        """What the subprocess needs to serve."""
        return {
            "port": self.port,
            "home": str(self.home),
            "user": self.user,
            "password": self.password,
            "tls": self.tls,
            "certfile": str(self.certfile) if self.certfile else None,
            "keyfile": str(self.keyfile) if self.keyfile else None,
            "throttle": self.throttle,
            "mlsd": self.mlsd,
            "passive_ports": list(self.passive_ports),
        }

    def start(self) -> None:
        """Start serving (again) on the same port; return once the greeting arrives."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the FTP server is already running")
        self.process = _popen(
            [sys.executable, str(Path(__file__).resolve()), "ftp", json.dumps(self.config())], self.log_path
        )
        try:
            _wait_for_banner(self.process, self.port, b"220", self.log_path, "the test FTP server")
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the server at once, as a crash or a pulled cable would end it."""
        _stop(self.process, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server cleanly."""
        _stop(self.process)


def _serve_ftp(config: dict[str, Any]) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, ThrottledDTPHandler
    from pyftpdlib.servers import FTPServer

    authorizer = DummyAuthorizer()
    # e: change directory, l: list, r: retrieve. The client only reads.
    authorizer.add_user(config["user"], config["password"], config["home"], perm="elr")
    handler_base: type[FTPHandler] = FTPHandler
    dtp: type[DTPHandler] = DTPHandler
    attributes: dict[str, Any] = {}
    if config["tls"]:
        from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler

        handler_base, dtp = TLS_FTPHandler, TLS_DTPHandler
        attributes.update(
            certfile=config["certfile"],
            keyfile=config["keyfile"],
            # Refuse anything in clear text, so the tests prove the client protects both channels.
            tls_control_required=True,
            tls_data_required=True,
        )
    if config["throttle"]:
        bases = (dtp, ThrottledDTPHandler) if dtp is not DTPHandler else (ThrottledDTPHandler,)
        dtp = type("ThrottledTestDTP", bases, {"write_limit": int(config["throttle"])})
    proto_cmds = dict(handler_base.proto_cmds)
    if not config["mlsd"]:
        # An older server: the client must fall back to NLST, SIZE and MDTM.
        proto_cmds.pop("MLSD", None)
        proto_cmds.pop("MLST", None)
    first, last = config["passive_ports"]
    attributes.update(
        authorizer=authorizer,
        dtp_handler=dtp,
        proto_cmds=proto_cmds,
        passive_ports=list(range(first, last + 1)),
        banner="energy-dashboard test FTP server ready",
        # pyftpdlib waits 3 s before answering a wrong password; the tests need not.
        auth_failed_timeout=0.05,
        timeout=60,
    )
    handler = type("TestFTPHandler", (handler_base,), attributes)
    server = FTPServer((HOST, config["port"]), handler)
    server.serve_forever(handle_exit=True)


# --------------------------------------------------------------------------- SFTP (OpenSSH)


def sshd_path() -> str:
    """The sshd binary (Debian's openssh-server, installed by `make system-deps`)."""
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if not found:
        raise RuntimeError("sshd is not installed; run `make system-deps` (Debian package openssh-server)")
    return found


class SshServer:
    """OpenSSH's sshd on 127.0.0.1 with throwaway keys; SFTP only, key login for the current user."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        keys = root / "keys"
        keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port = _free_port()
        self.log_path = root / "sshd.log"
        self.host_key_path = keys / "host_ed25519"
        client_key_path = keys / "client_ed25519"
        for path in (self.host_key_path, client_key_path):
            subprocess.run(
                ["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-C", path.name, "-f", str(path)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        self.host_key_line = " ".join(Path(f"{self.host_key_path}.pub").read_text().split()[:2])
        self.host_fingerprint = openssh_fingerprint(self.host_key_line)
        self.client_private_key = client_key_path.read_text()
        self.authorized_keys = keys / "authorized_keys"
        shutil.copyfile(f"{client_key_path}.pub", self.authorized_keys)
        self.config_path = root / "sshd_config"
        self.config_path.write_text(self._config())
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        return "\n".join(
            [
                f"ListenAddress {HOST}",
                f"Port {self.port}",
                f"HostKey {self.host_key_path}",
                f"PidFile {self.root / 'sshd.pid'}",
                f"AuthorizedKeysFile {self.authorized_keys}",
                "UsePAM no",
                # The keys live in a pytest temp dir whose owners and modes sshd would reject.
                "StrictModes no",
                # The CI runs as root; allow root in with a key only.
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication yes",
                "PermitEmptyPasswords no",
                "KbdInteractiveAuthentication no",
                "UseDNS no",
                "AllowAgentForwarding no",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PermitTTY no",
                "Subsystem sftp internal-sftp",
                "ForceCommand internal-sftp",
                "LoginGraceTime 30",
                "MaxStartups 50",
                "LogLevel VERBOSE",
                "",
            ]
        )

    def start(self) -> None:
        """Start sshd in the foreground (-D), logging to a file (-e); return once the banner arrives."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("sshd is already running")
        if os.geteuid() == 0:
            # Privilege separation chroots into this directory; only root's sshd needs it.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.process = _popen([sshd_path(), "-D", "-e", "-f", str(self.config_path)], self.log_path)
        try:
            _wait_for_banner(self.process, self.port, b"SSH-2.0-", self.log_path, "the test sshd")
        except BaseException:
            self.stop()
            raise

    def session_pids(self) -> set[int]:
        """The per-connection sshd processes (they start their own sessions, outside our group)."""
        from energy_dashboard.supervisor import descendants

        if self.process is None or self.process.poll() is not None:
            return set()
        return descendants(self.process.pid)

    def kill_sessions(self, timeout: float = 5.0) -> int:
        """SIGKILL every open connection's processes (the daemon keeps listening); how many there were."""
        pids = self.session_pids()

        def depth(pid: int) -> int:
            level, current = 0, pid
            while current in pids and level < 20:
                current, level = _ppid(current), level + 1
            return level

        # Deepest first, so that each parent is still there to reap its child.
        for pid in sorted(pids, key=depth, reverse=True):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
            time.sleep(0.02)
        return len(pids)

    def stop(self) -> None:
        """Drop every connection, then stop the daemon."""
        self.kill_sessions()
        _stop(self.process)

    def log(self) -> str:
        """sshd's log so far (for assertion messages)."""
        return _tail(self.log_path, 200)


def _free_port() -> int:
    from energy_dashboard.testing import free_port

    return free_port()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "ftp":
        _serve_ftp(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: servers.py ftp CONFIG_JSON")
