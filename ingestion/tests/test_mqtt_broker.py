"""A real Mosquitto for the MQTT tests (Debian's `mosquitto`, `make system-deps`), and the tests
that the broker the fixtures start behaves as the ingester's tests assume: it keeps a
persistent session's QoS 1 messages across its own restart, refuses a wrong password, and
serves TLS with the certificate made here.

The other MQTT test files import `Mosquitto`, `publish` and the fixtures (`mosquitto_fixture`,
`mosquitto_factory_fixture`, named `mosquitto` and `mosquitto_factory`) from here.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from energy_dashboard.supervisor import die_with_parent
from ingestion.tests.servers import make_certificate

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto missing: make system-deps")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def make_client_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a client certificate it signs (for TLS client authentication): (ca, cert, key)."""
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    # Fixed dates: OpenSSL checks them against the real clock, the tests' clock may be shifted.
    not_before, not_after = datetime(2020, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("energy-dashboard test client CA"))
        .issuer_name(name("energy-dashboard test client CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("energy-dashboard ingester"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "client-ca.pem", directory / "client-cert.pem", directory / "client-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[2].chmod(0o600)
    return paths


class Mosquitto:
    """A Mosquitto on a free loopback port with its own configuration in `root`: persistence on
    (what a persistent session holds survives a restart), optionally a password file and TLS."""

    def __init__(
        self,
        root: Path,
        *,
        users: dict[str, str] | None = None,
        tls: bool = False,
        client_ca: Path | None = None,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.users = users or {}
        self.certfile: Path | None = None
        self.keyfile: Path | None = None
        if tls:
            self.certfile, self.keyfile = make_certificate(root / "tls", "mosquitto")
        self.client_ca = client_ca  # TLS client certificates required, signed by this CA
        self.log = root / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            # Run as root, mosquitto switches to the user `mosquitto`, which cannot write here.
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {self.root}/",
            "persistence_file mosquitto.db",
            # Queued while a persistent session's client is away: the tests queue 10,000.
            "max_queued_messages 1000000",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if self.users:
            passwords = self.root / "passwords"
            passwords.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            passwords.chmod(0o600)
            lines += [f"password_file {passwords}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if self.certfile:
            lines += [f"certfile {self.certfile}", f"keyfile {self.keyfile}"]
        if self.client_ca:
            lines += [f"cafile {self.client_ca}", "require_certificate true"]
        self.config = self.root / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl)
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited at start:\n{self.log.read_text(errors='replace')[-3000:]}"
                )
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=1):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {self.port}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM: it saves its persistence file first)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def restart(self) -> None:
        """Stop and start again on the same port, with what it persisted."""
        self.stop()
        self.start()


def client(server: Mosquitto, client_id: str = "", **options: Any) -> mqtt.Client:
    """A connected paho client (MQTT 5, its network thread running)."""
    made = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **options)
    if server.users:
        user, password = next(iter(server.users.items()))
        made.username_pw_set(user, password)
    if server.certfile:
        made.tls_set(ca_certs=str(server.certfile))
    connected = threading.Event()
    made.on_connect = lambda *args: connected.set()
    made.connect(HOST, server.port, keepalive=30)
    made.loop_start()
    assert connected.wait(10), "the test client did not connect"
    return made


def publish(server: Mosquitto, messages: list[tuple[str, bytes | str]], *, qos: int = 1) -> None:
    """Publish messages with a real paho client and wait until the broker has them all."""
    publisher = client(server)
    try:
        infos = [publisher.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        publisher.disconnect()
        publisher.loop_stop()


@pytest.fixture(name="mosquitto")
def mosquitto_fixture(tmp_path: Path) -> Iterator[Mosquitto]:
    """An anonymous broker for one test."""
    server = Mosquitto(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="mosquitto_factory")
def mosquitto_factory_fixture(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Brokers with options (users, tls) for one test; all stopped after it."""
    started: list[Mosquitto] = []

    def start(name: str = "special", **options: Any) -> Mosquitto:
        server = Mosquitto(tmp_path / f"mosquitto-{name}", **options)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


# --- the broker behaves as the ingester's tests assume ----------------------------------------


def _persistent_subscriber(server: Mosquitto, received: list[bytes], client_id: str) -> mqtt.Client:
    subscriber = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )
    subscribed = threading.Event()
    subscriber.on_subscribe = lambda *args: subscribed.set()
    subscriber.on_message = lambda c, u, message: received.append(bytes(message.payload))

    def on_connect(c: mqtt.Client, *args: Any) -> None:
        c.subscribe([("t/#", SubscribeOptions(qos=1))])

    subscriber.on_connect = on_connect
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    subscriber.connect(HOST, server.port, clean_start=False, properties=properties)
    subscriber.loop_start()
    assert subscribed.wait(10)
    return subscriber


def test_a_persistent_session_keeps_qos1_messages_across_a_broker_restart(mosquitto: Mosquitto) -> None:
    received: list[bytes] = []
    subscriber = _persistent_subscriber(mosquitto, received, "keeper")
    subscriber.disconnect()
    subscriber.loop_stop()
    publish(mosquitto, [("t/a", b"1"), ("t/b", b"2")])
    mosquitto.restart()
    subscriber = _persistent_subscriber(mosquitto, received, "keeper")
    deadline = time.monotonic() + 10
    while len(received) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    subscriber.disconnect()
    subscriber.loop_stop()
    assert sorted(received) == [b"1", b"2"]


def test_the_broker_refuses_a_wrong_password(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    server = mosquitto_factory("auth", users={"ingest": "right-password"})
    attempt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    attempt.username_pw_set("ingest", "wrong")
    codes: list[Any] = []
    attempt.on_connect = lambda c, u, flags, reason, props: codes.append(reason)
    attempt.connect(HOST, server.port)
    deadline = time.monotonic() + 10
    while not codes and time.monotonic() < deadline:
        attempt.loop(0.1)
    attempt.disconnect()
    assert codes and codes[0].is_failure and codes[0].value in (134, 135)


def test_the_broker_serves_tls_with_the_certificate_made_here(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    server = mosquitto_factory("tls", tls=True)
    tls_client = client(server)
    tls_client.disconnect()
    tls_client.loop_stop()
