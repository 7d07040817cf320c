"""The OpenADR 2.0b VEN: the building's side of a utility's (or aggregator's) VTN, with openleadr.

Each event in an `oadrDistributeEvent` becomes an Invitation (source "openadr", external_id the
VTN's event id) through `services.invitation_create`. The VEN never decides: the answer is the
auto-response policy's (run at once when the invitation is created) or an operator's. The VEN
relays it to the VTN as optIn (accepted) or optOut (declined, expired):

- at once, as `on_event`'s return value (openleadr then sends `oadrCreatedEvent`), when the
  invitation is answered within `answer_wait` seconds (and before its deadline);
- otherwise later: the event's automatic response is suppressed and a relay loop polls
  `services.invitations_unreported(source="openadr")` every `relay_interval` seconds, sending
  an unsolicited `oadrCreatedEvent` for each answer given meanwhile (openleadr 0.5.36's VTN
  does not serve `EiOpt`, so `create_opt` is not used).

The VEN also offers a TELEMETRY_USAGE report of the flexible devices' metered load (kW) and
sends it at the granularity the VTN asks for. See docs/demand-response.md, "OpenADR 2.0b VEN".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone
from openleadr import OpenADRClient, objects, utils

from demand_response import services
from demand_response.models import DREvent, FlexibleDevice, Invitation
from sensors import services as sensors_services

logger = logging.getLogger(__name__)

SOURCE = "openadr"
OPT_IN = "optIn"
OPT_OUT = "optOut"
# W per unit of an event signal's measurement scale (OpenADR SI scale codes), for kW.
_KW_PER_SCALED_W = {"none": 0.001, "k": 1.0, "M": 1000.0, "G": 1_000_000.0}


class NoFreshReading(LookupError):
    """No flexible device has a fresh power reading: there is no load to report now."""


class EventNotUnderstood(ValueError):
    """An OpenADR event the VEN cannot turn into an invitation (the reason is the message)."""


@dataclass(frozen=True)
class VenConfig:
    """How the VEN connects and behaves; `from_settings()` reads the OPENADR_* settings."""

    vtn_url: str
    ven_name: str = "energy-dashboard"
    ven_id: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    vtn_fingerprint: str | None = None
    ca_file: str | None = None
    # How long on_event waits for an answer before deferring it to the relay loop (it blocks
    # the VEN's polling meanwhile, so keep it short).
    answer_wait: float = 5.0
    answer_poll: float = 0.25
    relay_interval: float = 5.0
    # Answer with the auto-response policy at once rather than at the next beat (30 s).
    run_policy: bool = True
    resource_id: str = "building"
    report_min_period: timedelta = timedelta(seconds=10)
    report_max_period: timedelta = timedelta(hours=1)
    # SIMPLE signals carry a level (0-3), not kW: the kW each level asks for (none: refused).
    simple_level_kw: Mapping[int, float] = field(default_factory=dict)
    # None: the programme's (the VTN's market context; DR_PROGRAMME_BASELINES).
    baseline_method: str | None = None
    retry_min: float = 5.0
    retry_max: float = 300.0

    @classmethod
    def from_settings(cls, **overrides: Any) -> VenConfig:
        """The VEN's configuration from settings (OPENADR_*), with explicit overrides."""
        config = cls(
            vtn_url=settings.OPENADR_VTN_URL,
            ven_name=settings.OPENADR_VEN_NAME,
            ven_id=settings.OPENADR_VEN_ID or None,
            cert_file=settings.OPENADR_CERT_FILE or None,
            key_file=settings.OPENADR_KEY_FILE or None,
            vtn_fingerprint=settings.OPENADR_VTN_FINGERPRINT or None,
            ca_file=settings.OPENADR_CA_FILE or None,
        )
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})


# --- Reading an OpenADR event ---------------------------------------------------------------------


def _signals(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    signals = event.get("event_signals") or []
    # openleadr gives a list, or {"event_signals": [...]} for some messages.
    if isinstance(signals, Mapping):
        signals = signals.get("event_signals") or []
    return list(signals)


def _kw_factor(signal: Mapping[str, Any]) -> float:
    measurement = signal.get("measurement")
    if not measurement:
        return 1.0  # no unit given: the programme's convention here is kW
    unit, scale = measurement.get("unit"), measurement.get("scale") or "none"
    if unit != "W" or scale not in _KW_PER_SCALED_W:
        raise EventNotUnderstood(f"unsupported signal unit {scale} {unit}")
    return _KW_PER_SCALED_W[scale]


def requested_reduction_kw(
    signals: Sequence[Mapping[str, Any]], *, simple_level_kw: Mapping[int, float] | None = None
) -> float:
    """The reduction an event asks for, in kW: the largest over its intervals.

    LOAD_DISPATCH `delta` signals give the change of load (negative = reduction) in the
    signal's measurement (W with an SI scale; kW when none is given). SIMPLE / simple `level`
    signals are mapped by `simple_level_kw` (level -> kW). Other signals are not understood.
    """
    simple_level_kw = simple_level_kw or {}
    reductions: list[float] = []
    for signal in signals:
        name, kind = signal.get("signal_name"), signal.get("signal_type")
        values = [float(i["signal_payload"]) for i in signal.get("intervals") or []]
        if name == "LOAD_DISPATCH" and kind == "delta":
            factor = _kw_factor(signal)
            reductions += [-v * factor for v in values if v < 0]
        elif name in ("SIMPLE", "simple") and kind == "level":
            for value in values:
                if not math.isfinite(value):
                    raise EventNotUnderstood(f"SIMPLE level {value} is not a level")
                level = int(value)
                if level == 0:
                    continue
                if level not in simple_level_kw:
                    raise EventNotUnderstood(f"SIMPLE level {level} has no kW configured")
                reductions.append(float(simple_level_kw[level]))
    if not reductions:
        kinds = ", ".join(f"{s.get('signal_name')}/{s.get('signal_type')}" for s in signals) or "none"
        raise EventNotUnderstood(f"no load reduction in the event's signals ({kinds})")
    kw = max(reductions)
    if not math.isfinite(kw) or kw <= 0:
        raise EventNotUnderstood(f"the requested reduction is not a positive number of kW ({kw})")
    return kw


def invitation_fields(
    event: Mapping[str, Any],
    *,
    simple_level_kw: Mapping[int, float] | None = None,
    baseline_method: str | None = None,
) -> dict[str, Any]:
    """The `services.invitation_create` arguments for an OpenADR event (a parsed `oadrEvent`).

    The window is the event's active period; the response deadline is its start less the
    ramp-up period (OpenADR has no explicit deadline: the answer is due before the event).
    """
    descriptor = event["event_descriptor"]
    period = event["active_period"]
    start: datetime = period["dtstart"]
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    duration: timedelta = period["duration"]
    if duration <= timedelta(0):
        raise EventNotUnderstood("open-ended events (duration 0) are not supported")
    ramp_up = period.get("ramp_up_period")
    try:
        end = start + duration
        deadline = start - ramp_up if isinstance(ramp_up, timedelta) else start
    except OverflowError as exc:
        # Past year 9999 (or before year 1): no date at all. Dates within the calendar but
        # beyond the product's horizon are refused by invitation_create, naming the field.
        raise EventNotUnderstood(f"the event's period leaves the calendar ({exc})") from exc
    return {
        "reduction_kw": requested_reduction_kw(_signals(event), simple_level_kw=simple_level_kw),
        "start": start,
        "end": end,
        "response_deadline": deadline,
        "programme": str(descriptor.get("market_context") or "")[:64],
        "baseline_method": baseline_method,
        "source": SOURCE,
        "external_id": str(descriptor["event_id"]),
    }


def opt_for(status: str) -> str | None:
    """The OpenADR opt type for an invitation's status; None while it is pending."""
    if status == Invitation.Status.PENDING:
        return None
    return OPT_IN if status == Invitation.Status.ACCEPTED else OPT_OUT


# --- Database work (sync; the VEN calls it through sync_to_async) --------------------------------


def metered_load_kw(*, now: datetime | None = None) -> float | None:
    """The enabled flexible devices' metered load now, in kW: the sum of their sensors' latest
    power readings no older than DR_READING_MAX_AGE; None when no sensor has a fresh one."""
    now = now or timezone.now()
    sensor_ids = sorted(set(FlexibleDevice.objects.filter(enabled=True).values_list("sensor_id", flat=True)))
    if not sensor_ids:
        return None
    max_age = timedelta(seconds=settings.DR_READING_MAX_AGE)
    latest = sensors_services.power_latest(sensor_ids=sensor_ids)
    fresh = [watts for moment, watts in latest.values() if now - moment <= max_age]
    if not fresh:
        return None
    return math.fsum(fresh) / 1000.0


def _record(fields: dict[str, Any], run_policy: bool) -> Invitation:
    # A long-running process: drop connections that broke or outlived CONN_MAX_AGE first.
    close_old_connections()
    invitation = services.invitation_create(**fields)
    if run_policy and invitation.status == Invitation.Status.PENDING:
        services.auto_response_run()
        invitation.refresh_from_db()
    return invitation


def _status(pk: int) -> Invitation:
    return Invitation.objects.get(pk=pk)


def _find(external_id: str) -> Invitation | None:
    return Invitation.objects.filter(source=SOURCE, external_id=external_id).first()


def _withdraw(external_id: str) -> str | None:
    """The VTN cancelled an event: decline its pending invitation or cancel its DR event."""
    invitation = _find(external_id)
    if invitation is None:
        return None
    reason = "cancelled by the VTN (OpenADR)"
    if invitation.status == Invitation.Status.PENDING:
        try:
            services.invitation_decline(invitation=invitation, answered_by="system", reason=reason)
        except services.Conflict:
            invitation.refresh_from_db()
    elif invitation.status == Invitation.Status.ACCEPTED:
        event = DREvent.objects.filter(invitation=invitation, status__in=services.OPEN_EVENT).first()
        if event is not None:
            with contextlib.suppress(services.Conflict):  # cancelled or ended meanwhile
                services.event_cancel(event=event, cancelled_by="openadr", reason=reason)
    invitation.refresh_from_db()
    # The VTN's cancellation is acknowledged with the answer it already had.
    services.invitation_mark_reported(invitation=invitation)
    return opt_for(invitation.status)


def _unreported() -> list[Invitation]:
    close_old_connections()
    return services.invitations_unreported(source=SOURCE)


def _mark_reported(pk: int) -> bool:
    return services.invitation_mark_reported(invitation=Invitation(pk=pk))


# --- The VEN --------------------------------------------------------------------------------------


@dataclass
class _Deferred:
    request_id: str
    modification_number: int


class Ven:
    """An OpenADR 2.0b VEN bound to this building's demand-response services."""

    def __init__(self, config: VenConfig) -> None:
        self.config = config
        self.client: OpenADRClient | None = None
        # event id -> the oadrDistributeEvent's request id (for the oadrCreatedEvent we send later)
        self._request_ids: dict[str, str] = {}
        self._deferred: dict[str, _Deferred] = {}
        # Events inside on_event now: their answer goes back as its return value, not the relay.
        self._in_flight: set[str] = set()
        self.relayed: list[tuple[str, str]] = []

    # -- building the client

    def build_client(self) -> OpenADRClient:
        """A fresh openleadr client with this VEN's handlers, hooks and report."""
        c = self.config
        client = OpenADRClient(
            ven_name=c.ven_name,
            vtn_url=c.vtn_url,
            ven_id=c.ven_id,
            cert=c.cert_file,
            key=c.key_file,
            vtn_fingerprint=c.vtn_fingerprint,
            ca_file=c.ca_file,
            show_fingerprint=False,
        )
        client.add_handler("on_event", self.on_event)
        client.add_handler("on_update_event", self.on_update_event)
        client.add_hook("after_parse_xml", self._remember_request)
        client.add_report(
            self.report_load,
            resource_id=c.resource_id,
            measurement=objects.Measurement(
                name="powerReal",
                description="RealPower",
                unit="W",
                scale="k",
                power_attributes=objects.PowerAttributes(hertz=50, voltage=230, ac=True),
            ),
            scale="k",
            report_specifier_id=f"{c.ven_name}-load",
            r_id=f"{c.resource_id}-kw",
            sampling_rate=objects.SamplingRate(
                min_period=c.report_min_period, max_period=c.report_max_period, on_change=False
            ),
            report_duration=timedelta(hours=1),
        )
        self.client = client
        return client

    def _remember_request(self, message_type: str, payload: Mapping[str, Any]) -> None:
        # on_event sees one event, not its message: keep the request id an answer must cite.
        if message_type == "oadrDistributeEvent":
            request_id = payload.get("request_id") or ""
            for event in payload.get("events") or []:
                self._request_ids[str(event["event_descriptor"]["event_id"])] = request_id

    # -- events

    async def on_event(self, event: dict[str, Any]) -> str | None:
        """openleadr's on_event: record the invitation, return its answer if there is one soon,
        else defer the answer to the relay loop (and suppress openleadr's automatic optOut)."""
        descriptor = event["event_descriptor"]
        event_id = str(descriptor["event_id"])
        if descriptor.get("event_status") == "cancelled":
            return await sync_to_async(_withdraw)(event_id)
        self._in_flight.add(event_id)
        try:
            try:
                fields = invitation_fields(
                    event,
                    simple_level_kw=self.config.simple_level_kw,
                    baseline_method=self.config.baseline_method,
                )
            except (EventNotUnderstood, KeyError, TypeError, ValueError) as exc:
                # Not a decision: an event we cannot read cannot be taken part in.
                logger.warning("OpenADR event %s not understood, opting out: %s", event_id, exc)
                return OPT_OUT
            try:
                invitation = await sync_to_async(_record)(fields, self.config.run_policy)
            except services.DRError as exc:
                logger.warning("OpenADR event %s refused as an invitation, opting out: %s", event_id, exc)
                return OPT_OUT
            if invitation.status == Invitation.Status.PENDING:
                invitation = await self._wait_for_answer(invitation)
            answer = opt_for(invitation.status)
            if answer is None:
                self._defer(event)
                logger.info("OpenADR event %s: invitation %s pending; answer later", event_id, invitation.pk)
                return None
            await sync_to_async(_mark_reported)(invitation.pk)
            self._deferred.pop(event_id, None)
            logger.info("OpenADR event %s: invitation %s -> %s", event_id, invitation.pk, answer)
            return answer
        finally:
            self._in_flight.discard(event_id)

    async def on_update_event(self, event: dict[str, Any]) -> str | None:
        """openleadr's on_update_event: a cancellation withdraws the invitation; other changes
        keep the invitation and its answer (they are logged, not applied)."""
        descriptor = event["event_descriptor"]
        if descriptor.get("event_status") != "cancelled":
            logger.warning(
                "OpenADR event %s modified (modification %s): the invitation keeps its terms",
                descriptor.get("event_id"),
                descriptor.get("modification_number"),
            )
        return await self.on_event(event)

    async def _wait_for_answer(self, invitation: Invitation) -> Invitation:
        limit = min(self.config.answer_wait, (invitation.response_deadline - timezone.now()).total_seconds())
        until = time.monotonic() + max(limit, 0.0)
        while True:
            invitation = await sync_to_async(_status)(invitation.pk)
            if invitation.status != Invitation.Status.PENDING or time.monotonic() >= until:
                return invitation
            await asyncio.sleep(self.config.answer_poll)

    def _defer(self, event: dict[str, Any]) -> None:
        descriptor = event["event_descriptor"]
        event_id = str(descriptor["event_id"])
        self._deferred[event_id] = _Deferred(
            request_id=self._request_ids.get(event_id) or utils.generate_id(),
            modification_number=int(descriptor.get("modification_number") or 0),
        )
        # openleadr answers optOut for a None result when a response is required: mark this
        # copy as needing none (the relay answers), and forget it so a re-sent copy comes back
        # to on_event instead of repeating a None answer.
        event["response_required"] = "never"
        if self.client is not None:
            utils.pop_by(self.client.received_events, "event_descriptor.event_id", event_id)

    # -- relaying answers given later

    async def relay_answers(self) -> int:
        """Send the VTN each answer given since its event arrived (policy, operator, expiry);
        returns how many were delivered. An answer is marked reported once the VTN replied."""
        client = self.client
        if client is None or client.registration_id is None:
            return 0
        sent = 0
        for invitation in await sync_to_async(_unreported)():
            event_id = str(invitation.external_id)
            if event_id in self._in_flight:
                continue
            answer = opt_for(invitation.status)
            if answer is None:
                continue
            deferred = self._deferred.get(event_id) or _Deferred(
                request_id=self._request_ids.get(event_id) or utils.generate_id(), modification_number=0
            )
            replied = await self._send_created_event(event_id, answer, deferred)
            if not replied:
                continue  # the VTN was unreachable: try again next time
            await sync_to_async(_mark_reported)(invitation.pk)
            self._deferred.pop(event_id, None)
            self.relayed.append((event_id, answer))
            sent += 1
            logger.info("OpenADR event %s: relayed %s (invitation %s)", event_id, answer, invitation.pk)
        return sent

    async def _send_created_event(self, event_id: str, answer: str, deferred: _Deferred) -> bool:
        client = self.client
        assert client is not None
        response = {"response_code": 200, "response_description": "OK", "request_id": deferred.request_id}
        message = client._create_message(  # private: created_event() hides the VTN's reply
            "oadrCreatedEvent",
            response=response,
            ven_id=client.ven_id,
            event_responses=[
                {
                    **response,
                    "event_id": event_id,
                    "modification_number": deferred.modification_number,
                    "opt_type": answer,
                }
            ],
        )
        result = await client._perform_request("EiEvent", message)
        if not result or result[0] is None:
            return False
        code = (result[1].get("response") or {}).get("response_code")
        if code not in (None, 200, "200"):
            # The VTN no longer knows the event: nothing more can be told; do not retry forever.
            logger.warning("The VTN answered %s to the opt for event %s", code, event_id)
        client.responded_events[event_id] = answer
        return True

    # -- reporting

    async def report_load(self) -> list[tuple[datetime, float]]:
        """The metered load sample for the TELEMETRY_USAGE report: [(now, kW)].

        Raises NoFreshReading when there is none: openleadr then skips the sample (its
        scheduler logs the error) rather than send a report without intervals, which
        openleadr's own VTN rejects with HTTP 500; a made-up 0 kW would read as a full shed.
        """
        now = timezone.now()
        kw = await sync_to_async(metered_load_kw)(now=now)
        if kw is None:
            raise NoFreshReading("no flexible device has a fresh power reading: no load report now")
        return [(now, round(kw, 3))]

    # -- running

    async def start(self) -> bool:
        """Register with the VTN and start polling and reporting; False if registration failed."""
        client = self.build_client()
        await client.run()
        return client.registration_id is not None

    async def stop(self) -> None:
        """Stop polling and close the connection."""
        if self.client is not None:
            try:
                await self.client.stop()
            except Exception:  # a client that never connected has no session to close
                logger.debug("stopping the OpenADR client", exc_info=True)

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set: register (retrying with backoff while the VTN is unreachable
        or refuses), then relay answers every `relay_interval` seconds."""
        try:
            await self._serve(stop)
        finally:
            # The ORM ran in sync_to_async's thread: close its connections there.
            await sync_to_async(connections.close_all)()

    async def _serve(self, stop: asyncio.Event) -> None:
        delay = self.config.retry_min
        while not stop.is_set():
            if not await self.start():
                await self.stop()
                logger.warning("OpenADR: not registered with %s; again in %.0f s", self.config.vtn_url, delay)
                await _wait(stop, delay)
                delay = min(delay * 2, self.config.retry_max)
                continue
            delay = self.config.retry_min
            assert self.client is not None  # start() built it
            logger.info("OpenADR: registered with %s as ven_id %s", self.config.vtn_url, self.client.ven_id)
            while not stop.is_set() and self.client.registration_id is not None:
                try:
                    await self.relay_answers()
                except Exception:
                    logger.exception("OpenADR: relaying answers failed")
                await _wait(stop, self.config.relay_interval)
            await self.stop()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
