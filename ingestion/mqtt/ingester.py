"""The MQTT ingester: one paho client per enabled broker, one thread that stores.

Each client (MQTT 5, its own network thread) subscribes to its mappings' filters at QoS 1 on a
persistent session (clean start off, a session that outlives a week's absence) and hands every
message to one queue. The storing thread takes messages from it in batches (BATCH_MESSAGES, or
whatever arrived within BATCH_SECONDS of the first), turns them into readings
(`ingestion.mqtt.payloads`), stores them with one `sensors.services.readings_ingest` call (so
they reach the live feed like any other batch), records the batch's bad input on the mappings,
and only then acknowledges the batch's messages to their brokers (paho's manual
acknowledgement). An ingester killed at any moment loses nothing (the broker delivers again
what it did not acknowledge) and doubles nothing (a payload's time makes a repeat a duplicate
the store skips; an arrival time is kept in Redis for a redelivery, `ingestion.mqtt.state`).

A broker that is down, refuses the login or presents a certificate that is not trusted is a
state on /health, and the client tries again with a backoff (1 s doubling to 30 s).
"""

from __future__ import annotations

import logging
import os
import queue
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from django.db import DatabaseError, close_old_connections, connections, transaction
from django.db.models import F
from django.utils import timezone
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingestion import remote
from ingestion.mqtt import state
from ingestion.mqtt.models import Broker, Mapping
from ingestion.mqtt.payloads import (
    IGNORED,
    MALFORMED,
    REJECTED,
    UNKNOWN_SENSOR,
    Compiled,
    Problem,
    example,
    sensor_kind,
    specificity,
    topic_matches,
)
from ingestion.validators import allowed_networks, secret_path_allowed
from sensors import services as sensors

logger = logging.getLogger(__name__)

DB = "ingestion"
# A batch: this many messages, or what arrived within BATCH_SECONDS of its first, whichever
# comes first (bench/mqtt.py measured the defaults).
BATCH_MESSAGES = 2_000
BATCH_SECONDS = 0.2
# Messages waiting to be stored; past this the network threads wait (the broker keeps the rest).
INBOX_MAX = 50_000
# How often the brokers and mappings are read again (changes take effect within this), and the
# state written to Redis.
RELOAD_S = 5.0
STATE_S = 1.0
# Reconnection backoff (seconds): paho doubles from the first to the last.
BACKOFF_MIN_S, BACKOFF_MAX_S = 1, 30
KEEPALIVE_S = 30
# The session the broker keeps for us while we are away (MQTT 5 Session Expiry Interval).
SESSION_EXPIRY_S = 7 * 86_400
# Unacknowledged messages the broker may send us at once (MQTT 5 Receive Maximum, its largest):
# a batch is acknowledged only once stored, so the broker must not stop at its default of 20.
RECEIVE_MAXIMUM = 65_535
# Subscription identifiers: the mappings' filters, and the watched ones.
SUB_MAPPINGS, SUB_WATCH = 1, 2
# A stored batch's arrival times are forgotten this long after its acknowledgement, if the
# connection stayed up meanwhile (the acknowledgement reached the broker); else they expire.
STAMP_FORGET_AFTER_S = 30.0
# Topics whose mapping is remembered (a building has thousands of devices, not millions).
TOPIC_CACHE_MAX = 100_000
# Pause before storing a batch again after the readings store failed, doubling to the last.
STORE_RETRY_S = (0.5, 30.0)


class AddressRefused(OSError):
    """The broker's host resolves to an address INGESTION_ALLOWED_NETWORKS does not allow."""


class _Client(mqtt.Client):
    """A paho client that keeps the reason its last connection attempt failed (paho's
    on_connect_fail callback is not told) and checks the broker's address first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_error: BaseException | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            try:
                remote.resolve(self._host, self._port, allowed_networks(), label="MQTT broker")
            except remote.RemoteError as exc:
                raise AddressRefused(str(exc)) from exc
            return super().reconnect()
        except OSError as exc:
            self.last_error = exc
            raise


@dataclass(slots=True)  # one a message: no per-instance dict
class Incoming:
    """A message as the network thread hands it over."""

    conn: Connection
    session: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    dup: bool
    arrival: float
    watched_only: bool


def _error_of(exc: BaseException, broker: str) -> tuple[str, str]:
    """(kind, message in our words) for a failed connection attempt."""
    if isinstance(exc, AddressRefused):
        return "address", str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls", f"the certificate of broker {broker} is not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return "tls", f"TLS with broker {broker} failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connect", f"broker {broker} refused the connection (is it running?)"
    if isinstance(exc, TimeoutError):
        return "connect", f"broker {broker} did not answer in time"
    reason = exc.strerror if isinstance(exc, OSError) else None
    return "connect", f"cannot connect to broker {broker}: {reason or exc}"


@dataclass
class Counts:
    """What one broker's messages came to since the ingester started."""

    messages_in: int = 0
    readings_stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    malformed: int = 0
    unknown_sensors: int = 0
    unknown_topics: int = 0
    last_message_at: float | None = None


class Connection:
    """One broker: its client, its mappings, its state."""

    def __init__(self, broker: Broker, mappings: list[Compiled], inbox: queue.Queue[Incoming]) -> None:
        self.broker_id = broker.pk
        self.name = broker.name
        self.fingerprint = _broker_fingerprint(broker)
        self.watch = broker.watch_topics.split()
        self.mappings: list[Compiled] = []
        self._topic_cache: dict[str, Compiled | None] = {}
        self.inbox = inbox
        self.counts = Counts()
        self.connected = False
        self.connected_since: float | None = None
        self.error = ""
        self.error_kind = ""
        self.session = 0  # changes when the broker lost our session: old packet ids mean nothing
        self.epoch = 0  # changes at every connection
        self._last_arrival = 0.0
        self._subscribed: set[str] = set()
        # Set once the broker has answered a subscription of this connection (tests wait on it).
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.set_mappings(mappings)
        self.client = self._make_client(broker)

    # --- the client ------------------------------------------------------------------------

    def _make_client(self, broker: Broker) -> _Client:
        client = _Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=broker.effective_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if broker.username:
            client.username_pw_set(broker.username, broker.password or None)
        if broker.tls:
            for path in (broker.ca_file, broker.client_cert_file, broker.client_key_file):
                if path and not secret_path_allowed(path):
                    raise ValueError(f"{path} is not under INGESTION_SECRETS_DIR")
            client.tls_set(
                ca_certs=broker.ca_file or None,
                certfile=broker.client_cert_file or None,
                keyfile=broker.client_key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.reconnect_delay_set(BACKOFF_MIN_S, BACKOFF_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._host, self._port = broker.host, broker.effective_port
        self.tls = broker.tls
        return client

    def start(self) -> None:
        """Connect in the background (the client retries on its own)."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect_async(
            self._host, self._port, keepalive=KEEPALIVE_S, clean_start=False, properties=properties
        )
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect (what is not acknowledged stays with the broker) and end the thread."""
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            self.connected = False
            if reason.value in (134, 135):  # Bad user name or password, Not authorized
                self.error_kind = "auth"
                self.error = f"broker {self.name} refused the login: {reason.getName()}"
            else:
                self.error_kind = "refused"
                self.error = f"broker {self.name} refused the connection: {reason.getName()}"
            logger.warning("%s", self.error)
            return
        with self._lock:
            self.epoch += 1
            if not flags.session_present:
                self.session += 1
            self.connected, self.connected_since = True, time.time()
            self.error = self.error_kind = ""
            self._subscribed = set()
            self.subscribed.clear()
        kept = "kept" if flags.session_present else "new"
        logger.info("connected to broker %s (session %s)", self.name, kept)
        self._subscribe()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        exc = getattr(client, "last_error", None)
        self.connected = False
        if exc is not None:
            self.error_kind, self.error = _error_of(exc, self.name)
        else:
            self.error_kind, self.error = "connect", f"cannot connect to broker {self.name}"
        logger.warning("%s", self.error)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        with self._lock:
            was, self.connected = self.connected, False
            self.epoch += 1
        if was and reason.is_failure:
            self.error_kind, self.error = "connect", f"lost the connection to broker {self.name}: {reason}"
            logger.warning("%s", self.error)
        elif not was and not self.error:
            # Closed before its CONNACK: with TLS 1.3 a broker refuses a missing or unknown client
            # certificate only after the handshake, by closing the connection.
            self.error_kind = "tls" if self.tls else "connect"
            self.error = f"broker {self.name} closed the connection before accepting it ({reason})"
            if self.tls:
                self.error += "; does it require a client certificate this one does not have?"
            logger.warning("%s", self.error)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self.error_kind, self.error = "subscribe", f"broker {self.name} refused a subscription: {refused}"
            logger.warning("%s", self.error)
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        # Strictly increasing: two messages of one sensor never share an arrival instant.
        arrival = self._last_arrival = max(now, self._last_arrival + 1e-6)
        identifiers = getattr(message.properties, "SubscriptionIdentifier", None) or []
        self.inbox.put(
            Incoming(
                conn=self,
                session=self.session,
                mid=message.mid,
                qos=message.qos,
                topic=message.topic,
                # paho types it bytes | bytearray and gives bytes, which bytes() returns as is.
                payload=bytes(message.payload),
                dup=bool(message.dup),
                arrival=arrival,
                watched_only=bool(identifiers) and SUB_MAPPINGS not in identifiers,
            )
        )

    def _subscribe(self) -> None:
        with self._lock:
            wanted_mappings = sorted({m.topic for m in self.mappings})
            wanted_watch = sorted(set(self.watch) - set(wanted_mappings))
            gone = sorted(self._subscribed - set(wanted_mappings) - set(wanted_watch))
            new_mappings = [t for t in wanted_mappings if t not in self._subscribed]
            new_watch = [t for t in wanted_watch if t not in self._subscribed]
            self._subscribed = set(wanted_mappings) | set(wanted_watch)
        if gone:
            self.client.unsubscribe(gone)
        for topics, qos, identifier in ((new_mappings, 1, SUB_MAPPINGS), (new_watch, 0, SUB_WATCH)):
            if topics:
                properties = Properties(PacketTypes.SUBSCRIBE)
                properties.SubscriptionIdentifier = identifier
                self.client.subscribe([(t, SubscribeOptions(qos=qos)) for t in topics], properties=properties)

    # --- mappings ----------------------------------------------------------------------------

    def set_mappings(self, mappings: list[Compiled]) -> None:
        """Take a new set of mappings (subscribing to new filters, leaving old ones)."""
        ordered = sorted(mappings, key=lambda m: (m.priority, specificity(m.topic)), reverse=True)
        with self._lock:
            self.mappings = ordered
            self._topic_cache = {}
        if self.connected:
            self._subscribe()

    def resolve(self, topic: str) -> Compiled | None:
        """The mapping that claims `topic`: the highest priority, then the most specific filter."""
        try:
            return self._topic_cache[topic]
        except KeyError:
            pass
        found = next((m for m in self.mappings if topic_matches(m.topic, topic)), None)
        if len(self._topic_cache) >= TOPIC_CACHE_MAX:
            self._topic_cache.clear()
        self._topic_cache[topic] = found
        return found

    def ack(self, message: Incoming) -> None:
        """Acknowledge a stored message, if its packet id still names it at the broker."""
        if message.qos and message.session == self.session:
            self.client.ack(message.mid, message.qos)

    def state(self) -> dict[str, Any]:
        """This broker's state, for /health."""
        counts = self.counts
        return {
            "broker": self.name,
            "pid": os.getpid(),
            "at": time.time(),
            "connected": self.connected,
            "connected_since": self.connected_since,
            "error": self.error,
            "error_kind": self.error_kind,
            "last_message_at": counts.last_message_at,
            "messages_in": counts.messages_in,
            "readings_stored": counts.readings_stored,
            "duplicates": counts.duplicates,
            "rejected": counts.rejected,
            "malformed": counts.malformed,
            "unknown_sensors": counts.unknown_sensors,
            "unknown_topics": counts.unknown_topics,
            "mappings": len(self.mappings),
        }


def _broker_fingerprint(broker: Broker) -> tuple[Any, ...]:
    """What, when it changes, needs a new connection."""
    return (
        broker.host,
        broker.effective_port,
        broker.tls,
        broker.ca_file,
        broker.client_cert_file,
        broker.client_key_file,
        broker.username,
        broker.password,
        broker.effective_client_id,
    )


@dataclass
class _Tally:
    """One batch's outcome per mapping and broker, written to their rows once per batch."""

    messages: dict[int, int] = field(default_factory=dict)
    readings: dict[int, int] = field(default_factory=dict)
    problems: dict[int, dict[str, int]] = field(default_factory=dict)
    last: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    unclaimed: dict[int, int] = field(default_factory=dict)
    last_unclaimed: dict[int, dict[str, Any]] = field(default_factory=dict)

    def problem(self, mapping: Compiled, kind: str, reason: str, message: Incoming) -> None:
        kinds = self.problems.setdefault(mapping.id, {})
        kinds[kind] = kinds.get(kind, 0) + 1
        self.last.setdefault(mapping.id, {})[kind] = {
            "reason": reason,
            **example(message.topic, message.payload),
            "at": timezone.now().isoformat(),
        }


_COUNT_COLUMNS = {
    MALFORMED: "malformed_count",
    REJECTED: "rejected_count",
    UNKNOWN_SENSOR: "unknown_sensor_count",
}


class Ingester:
    """Reads the brokers and mappings, runs their clients, stores the readings."""

    def __init__(
        self,
        *,
        batch_messages: int = BATCH_MESSAGES,
        batch_seconds: float = BATCH_SECONDS,
        stop: threading.Event | None = None,
        on_stored: Callable[[list[Incoming]], None] | None = None,
    ) -> None:
        self.batch_messages = batch_messages
        self.batch_seconds = batch_seconds
        self.stop = stop or threading.Event()
        self.inbox: queue.Queue[Incoming] = queue.Queue(maxsize=INBOX_MAX)
        self.connections: dict[int, Connection] = {}
        self._config: Any = None
        self._stamps_acked: deque[tuple[float, Connection, int, list[str]]] = deque()
        self._on_stored = on_stored
        # Brokers whose client could not be made (a TLS file missing or unreadable): broker name
        # -> why, shown on /health until the broker is changed.
        self.unusable: dict[str, str] = {}

    # --- configuration -----------------------------------------------------------------------

    def _read_config(self) -> tuple[list[Broker], dict[int, list[Compiled]]]:
        brokers = list(Broker.objects.filter(enabled=True))
        mappings: dict[int, list[Compiled]] = {b.pk: [] for b in brokers}
        for row in Mapping.objects.filter(enabled=True, broker__enabled=True):
            mappings[row.broker_id].append(Compiled.of(row.as_dict()))
        return brokers, mappings

    def reload(self) -> None:
        """Bring the clients in line with the brokers and mappings as stored now."""
        brokers, mappings = self._read_config()
        config = (
            [(b.pk, b.updated_at) for b in brokers],
            {k: [(m.id, m.topic, m) for m in v] for k, v in mappings.items()},
        )
        if config == self._config:
            return
        self._config = config
        wanted = {b.pk: b for b in brokers}
        self.unusable = {name: e for name, e in self.unusable.items() if name in {b.name for b in brokers}}
        for pk in list(self.connections):
            conn = self.connections[pk]
            broker = wanted.get(pk)
            if broker is None or _broker_fingerprint(broker) != conn.fingerprint:
                logger.info("broker %s: stopping (disabled, deleted or changed)", conn.name)
                conn.stop()
                del self.connections[pk]
        for pk, broker in wanted.items():
            conn = self.connections.get(pk)
            if conn is None:
                try:
                    conn = Connection(broker, mappings[pk], self.inbox)
                except (ValueError, OSError) as exc:  # ssl.SSLError is an OSError
                    logger.error("broker %s cannot be used: %s", broker.name, exc)
                    self.unusable[broker.name] = f"broker {broker.name} cannot be used: {exc}"
                    continue
                self.unusable.pop(broker.name, None)
                self.connections[pk] = conn
                conn.start()
                logger.info("broker %s: connecting to %s:%s", broker.name, broker.host, broker.effective_port)
            else:
                conn.watch = broker.watch_topics.split()
                conn.set_mappings(mappings[pk])

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Until `stop` is set: reload now and then, store batches, write the state."""
        next_reload = next_state = 0.0
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= next_reload:
                    close_old_connections()
                    try:
                        self.reload()
                    except DatabaseError as exc:
                        logger.error("cannot read the brokers and mappings: %s", exc)
                    next_reload = now + RELOAD_S
                batch = self.collect()
                if batch:
                    self.store(batch)
                if time.monotonic() >= next_state:
                    self.publish_state()
                    next_state = time.monotonic() + STATE_S
        finally:
            for conn in self.connections.values():
                conn.stop()
            self.publish_state()
            connections.close_all()  # this thread's

    def collect(self) -> list[Incoming]:
        """A batch: up to batch_messages, or what arrives within batch_seconds of the first."""
        try:
            first = self.inbox.get(timeout=min(0.5, STATE_S))
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_messages:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def store(self, batch: list[Incoming]) -> None:
        """Store a batch, retrying while the readings store fails (nothing is acknowledged
        until it is stored), then acknowledge it."""
        pause = STORE_RETRY_S[0]
        while True:
            try:
                stamped = self._store_once(batch)
                break
            except Exception as exc:  # the database or Redis: nothing acknowledged, tried again
                logger.error("storing %d MQTT messages failed, again in %.1f s: %r", len(batch), pause, exc)
                for conn in {m.conn for m in batch}:
                    conn.error_kind, conn.error = "storage", f"the readings could not be stored: {exc}"
                close_old_connections()
                if self.stop.wait(pause):
                    return  # not acknowledged: the broker delivers them again
                pause = min(pause * 2, STORE_RETRY_S[1])
        now = time.monotonic()
        for message in batch:
            message.conn.ack(message)
        for conn, keys in stamped.items():
            self._stamps_acked.append((now, conn, conn.epoch, keys))
        self._forget_stamps(now)
        if self._on_stored is not None:
            self._on_stored(batch)

    def _forget_stamps(self, now: float) -> None:
        forget: list[str] = []
        while self._stamps_acked and self._stamps_acked[0][0] <= now - STAMP_FORGET_AFTER_S:
            _, conn, epoch, keys = self._stamps_acked.popleft()
            if conn.epoch == epoch and conn.connected:
                forget.extend(keys)
        try:
            state.stamps_forget(forget)
        except Exception as exc:  # they expire on their own
            logger.warning("could not forget %d arrival times: %s", len(forget), exc)

    def _store_once(self, batch: list[Incoming]) -> dict[Connection, list[str]]:  # noqa: PLR0912, PLR0915 (one pass over a batch)
        """Store a batch's readings and record its counts; the arrival-time keys it wrote."""
        tally = _Tally()
        items: list[dict[str, Any]] = []
        owners: list[tuple[Incoming, Compiled]] = []
        decoded: list[tuple[Incoming, Compiled, list[dict[str, Any]]]] = []
        stamp_keys: dict[int, str] = {}
        for message in batch:
            conn = message.conn
            mapping = conn.resolve(message.topic)
            if message.watched_only:
                if mapping is not None:
                    continue  # its mapping's own subscription delivers it
                tally.unclaimed[conn.broker_id] = tally.unclaimed.get(conn.broker_id, 0) + 1
                tally.last_unclaimed[conn.broker_id] = {
                    **example(message.topic, message.payload),
                    "at": timezone.now().isoformat(),
                }
                conn.counts.messages_in += 1
                conn.counts.unknown_topics += 1
                conn.counts.last_message_at = message.arrival
                continue
            conn.counts.messages_in += 1
            conn.counts.last_message_at = message.arrival
            if mapping is None:  # a subscription of a mapping since removed
                tally.unclaimed[conn.broker_id] = tally.unclaimed.get(conn.broker_id, 0) + 1
                tally.last_unclaimed[conn.broker_id] = {
                    **example(message.topic, message.payload),
                    "at": timezone.now().isoformat(),
                }
                conn.counts.unknown_topics += 1
                continue
            tally.messages[mapping.id] = tally.messages.get(mapping.id, 0) + 1
            if mapping.arrival_time:
                key = state.stamp_key(conn.name, message.mid, message.topic, message.payload)
                stamp_keys[id(message)] = key
            decoded.append((message, mapping, []))

        # Arrival times given before to messages the broker delivers again.
        redelivered = [(m, stamp_keys[id(m)]) for m, _, _ in decoded if m.dup and id(m) in stamp_keys]
        if redelivered:
            try:
                for (message, _), known in zip(
                    redelivered, state.stamps_get([k for _, k in redelivered]), strict=True
                ):
                    if known is not None:
                        message.arrival = known
            except Exception as exc:
                logger.warning("cannot read arrival times of redelivered messages: %s", exc)

        for message, mapping, out in decoded:
            try:
                out.extend(mapping.decode(message.topic, message.payload, message.arrival))
            except Problem as problem:
                tally.problem(mapping, problem.kind, problem.reason, message)
                if problem.kind == MALFORMED:
                    message.conn.counts.malformed += 1
                continue
            except Exception as exc:  # a payload no rule foresaw: counted, never a crash
                logger.exception("mapping %s could not read a message of %s", mapping.name, message.topic)
                tally.problem(mapping, MALFORMED, f"could not be read ({type(exc).__name__})", message)
                message.conn.counts.malformed += 1
                continue
            for item in out:
                items.append(item)
                owners.append((message, mapping))

        self._register_unknown(items, owners)

        batch_stamps: dict[Connection, list[str]] = {}
        pairs = [(stamp_keys[id(m)], m.arrival) for m, _, out in decoded if out and id(m) in stamp_keys]
        if pairs:
            try:
                state.stamps_set(pairs)
            except Exception as exc:  # stored all the same; a crash now could double these
                logger.warning("cannot record %d arrival times: %s", len(pairs), exc)
            for message, _, out in decoded:
                if out and id(message) in stamp_keys:
                    batch_stamps.setdefault(message.conn, []).append(stamp_keys[id(message)])

        if items:
            result = sensors.readings_ingest(readings=items, source="mqtt")
            rejected_at = set()
            for rejection in result["rejected"]:
                index = rejection["index"]
                rejected_at.add(index)
                message, mapping = owners[index]
                unknown = rejection["reason"].startswith("unknown sensor")
                tally.problem(mapping, UNKNOWN_SENSOR if unknown else REJECTED, rejection["reason"], message)
                if unknown:
                    message.conn.counts.unknown_sensors += 1
                else:
                    message.conn.counts.rejected += 1
            for index, (_, mapping) in enumerate(owners):
                if index not in rejected_at:
                    tally.readings[mapping.id] = tally.readings.get(mapping.id, 0) + 1
            stored = result["accepted"]
            by_conn: dict[Connection, int] = {}
            for index, (message, _) in enumerate(owners):
                if index not in rejected_at:
                    by_conn[message.conn] = by_conn.get(message.conn, 0) + 1
            # The store counts the batch, not each broker's part: shared in proportion.
            total = sum(by_conn.values()) or 1
            for conn, n in by_conn.items():
                conn.counts.readings_stored += round(stored * n / total)
                conn.counts.duplicates += round(result["duplicates"] * n / total)
        self._record(tally)
        return batch_stamps

    def _register_unknown(self, items: list[dict[str, Any]], owners: list[tuple[Incoming, Compiled]]) -> None:
        """Register the sensors not yet known of mappings that say so (no room, as meter files)."""
        wanted: dict[str, tuple[str, Compiled]] = {}
        for item, (_, mapping) in zip(items, owners, strict=True):
            if mapping.register_unknown and item["sensor_id"] not in wanted:
                wanted[item["sensor_id"]] = (item["metric"], mapping)
        if not wanted:
            return
        known = sensors.sensors_known(sensor_ids=list(wanted))
        for sensor_id, (metric, mapping) in wanted.items():
            if sensor_id in known:
                continue
            sensors.sensor_register(
                sensor_id=sensor_id,
                kind=sensor_kind(metric),
                name=sensor_id,
                metadata={"registered_by": "mqtt", "mapping": mapping.name},
            )
            logger.info("registered sensor %s (mapping %s)", sensor_id, mapping.name)

    def _record(self, tally: _Tally) -> None:
        """Write the batch's counts on the mappings and brokers (one transaction)."""
        touched = set(tally.messages) | set(tally.problems)
        if not touched and not tally.unclaimed:
            return
        with transaction.atomic(using=DB):
            for mapping_id in touched:
                changes: dict[str, Any] = {
                    "messages_count": F("messages_count") + tally.messages.get(mapping_id, 0),
                    "readings_count": F("readings_count") + tally.readings.get(mapping_id, 0),
                }
                for kind, n in tally.problems.get(mapping_id, {}).items():
                    column = _COUNT_COLUMNS.get(kind)
                    if column:
                        changes[column] = F(column) + n
                if mapping_id in tally.last:
                    kept = Mapping.objects.filter(pk=mapping_id).values_list("last_problems", flat=True)
                    row = kept.first()
                    last = dict(row or {})
                    for kind, entry in tally.last[mapping_id].items():
                        previous = last.get(kind, {}).get("count", 0)
                        last[kind] = {**entry, "count": previous + tally.problems[mapping_id][kind]}
                    changes["last_problems"] = last
                Mapping.objects.filter(pk=mapping_id).update(**changes)
            for broker_id, n in tally.unclaimed.items():
                Broker.objects.filter(pk=broker_id).update(
                    unclaimed_count=F("unclaimed_count") + n, last_unclaimed=tally.last_unclaimed[broker_id]
                )

    def publish_state(self) -> None:
        """Each broker's state in Redis, for /health."""
        states = [conn.state() for conn in self.connections.values()]
        for name, error in self.unusable.items():
            states.append(_unusable_state(name, error))
        if not states:
            return
        try:
            state.write(states)
        except Exception as exc:  # /health then shows the ingester as gone
            logger.warning("cannot write the MQTT state to Redis: %s", exc)


def _unusable_state(name: str, error: str) -> dict[str, Any]:
    """The state of a broker whose client could not be made."""
    return {
        "broker": name,
        "pid": os.getpid(),
        "at": time.time(),
        "connected": False,
        "connected_since": None,
        "error": error,
        "error_kind": "config",
        "last_message_at": None,
        **dict.fromkeys(
            ("messages_in", "readings_stored", "duplicates", "rejected", "malformed", "unknown_sensors"), 0
        ),
        "unknown_topics": 0,
        "mappings": 0,
    }


__all__ = ["IGNORED", "Ingester"]
