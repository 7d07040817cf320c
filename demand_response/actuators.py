"""How dispatch commands reach devices.

`RecordingActuator` always runs, inside the dispatch transaction: it stores each command
(`DispatchCommand`). With MQTT_URL set, `MqttActuator` also publishes each command, after the
commit, to ``{MQTT_TOPIC_PREFIX}/{device}/command`` at QoS 1 (payload:
`DispatchCommand.payload()`), and records on the command whether the broker took it.

The state changes a command follows from (a device shed or restored) are announced on the bus
by the services that make them (`demand_response/services/_announce.py`), like every other
change of an invitation or an event: this file knows commands and their delivery, not the
state machines, and the services import it, never the other way round.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from urllib.parse import unquote, urlsplit

from django.conf import settings

from demand_response.models import DispatchCommand, DREvent, EventDevice

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0


class Publisher(Protocol):
    """Something that delivers stored commands to the devices' controllers."""

    def publish(self, commands: Sequence[DispatchCommand]) -> dict[int, str]:
        """Deliver the commands; returns command pk -> outcome ("published" or "failed: ...")."""
        ...


class RecordingActuator:
    """Stores each command: the command log (always on)."""

    def send(
        self, *, event: DREvent, row: EventDevice, action: str, kw: float, until: datetime, now: datetime
    ) -> DispatchCommand:
        """Record one command for `row`'s device, in the caller's transaction."""
        return DispatchCommand.objects.create(
            event=event, device=row.device, action=action, kw=kw, until=until, sent_at=now
        )


def topic(prefix: str, device: str) -> str:
    """The MQTT topic of a device's commands."""
    return f"{prefix.rstrip('/')}/{device}/command"


class MqttActuator:
    """Publishes commands to an MQTT broker (paho-mqtt 2.x), one connection per batch."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = urlsplit(url)
        self.prefix = prefix

    def publish(self, commands: Sequence[DispatchCommand]) -> dict[int, str]:
        """Connect, publish every command at QoS 1, wait for the broker's acknowledgements."""
        import paho.mqtt.client as mqtt

        if not commands:
            return {}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ed-dr-{uuid.uuid4().hex[:12]}")
        if self.url.username:
            client.username_pw_set(unquote(self.url.username), unquote(self.url.password or ""))
        secure = self.url.scheme in ("mqtts", "ssl", "tls")
        if secure:
            client.tls_set()
        client.connect_timeout = CONNECT_TIMEOUT_S
        outcome: dict[int, str] = {}
        try:
            client.connect(self.url.hostname or "127.0.0.1", self.url.port or (8883 if secure else 1883))
        except (OSError, ValueError) as exc:
            return {c.pk: f"failed: cannot connect to the broker ({exc})" for c in commands}
        client.loop_start()
        try:
            infos = [
                (
                    command,
                    client.publish(
                        topic(self.prefix, command.device.name), json.dumps(command.payload()), qos=1
                    ),
                )
                for command in commands
            ]
            for command, info in infos:
                try:
                    info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)
                except (RuntimeError, ValueError) as exc:
                    outcome[command.pk] = f"failed: {exc}"
                    continue
                outcome[command.pk] = "published" if info.is_published() else "failed: no acknowledgement"
        finally:
            client.disconnect()
            client.loop_stop()
        return outcome


def publisher() -> Publisher | None:
    """The MQTT publisher when MQTT_URL is set, else None (commands are only recorded)."""
    if not settings.MQTT_URL:
        return None
    return MqttActuator(settings.MQTT_URL, settings.MQTT_TOPIC_PREFIX)


def publish(commands: Sequence[DispatchCommand]) -> None:
    """Deliver recorded commands (after their transaction committed) and store each outcome."""
    target = publisher()
    if target is None or not commands:
        return
    try:
        outcome = target.publish(commands)
    except Exception as exc:
        # The event's state is committed; a broker problem must not undo it. Record and go on.
        logger.exception("publishing %d DR command(s) failed", len(commands))
        outcome = {c.pk: f"failed: {exc}" for c in commands}
    for pk, result in outcome.items():
        DispatchCommand.objects.filter(pk=pk).update(mqtt=result[:200])
        if result != "published":
            logger.warning("DR command %s not published: %s", pk, result)
