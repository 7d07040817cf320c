"""The OpenADR 2.0b VEN against a real openleadr VTN on loopback (no message signing: cert=None on
both sides, plain HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.utils import timezone
from openleadr import OpenADRServer

from demand_response import openadr, services
from demand_response.models import DispatchCommand, DREvent, FlexibleDevice, Invitation
from demand_response.tests.conftest import power
from demand_response.tests.helpers import permissive_policy
from energy_dashboard.testing import free_port, subprocess_env

pytestmark = pytest.mark.filterwarnings("ignore:It is recommended to use web.AppKey")
TRANSACTIONAL = pytest.mark.django_db(transaction=True, databases="__all__")
VEN_ID = "ven-under-test"


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Wait (bounded) for `check` to return something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")


class Vtn:
    """An openleadr VTN in its own thread and event loop, recording what VENs tell it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.registrations: list[dict[str, Any]] = []
        self.report_offers: list[tuple[str, str, str]] = []
        self.opts: dict[str, str] = {}
        self.values: list[tuple[datetime, float]] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = OpenADRServer(
            vtn_id="TEST_VTN",
            http_host="127.0.0.1",
            http_port=self.port,
            requested_poll_freq=timedelta(seconds=1),
            show_fingerprint=False,
        )
        self.server.add_handler("on_create_party_registration", self._register)
        self.server.add_handler("on_register_report", self._register_report)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"

    def _register(self, payload: dict[str, Any]) -> tuple[str, str]:
        self.registrations.append(payload)
        return VEN_ID, f"reg-{len(self.registrations)}"

    def _register_report(  # noqa: PLR0917 (openleadr calls it with these keywords)
        self,
        ven_id: str,
        resource_id: str,
        measurement: str,
        unit: str,
        scale: str,
        min_sampling_interval: timedelta,
        max_sampling_interval: timedelta,
    ) -> tuple[Callable[[list[tuple[datetime, float]]], None], timedelta]:
        self.report_offers.append((resource_id, measurement, f"{scale} {unit}"))
        return self.values.extend, timedelta(seconds=1)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` in the VTN's loop (its state is not thread-safe) and return its result."""

        async def wrapped() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(10)

    def add_event(self, kw_delta: float, start: datetime, minutes: int, **extra: Any) -> str:
        """Queue a LOAD_DISPATCH delta event (kW) for the VEN; returns its event id."""

        def record(ven_id: str, event_id: str, opt_type: str) -> None:
            self.opts[event_id] = opt_type

        return self.call(
            self.server.add_event,
            ven_id=VEN_ID,
            signal_name="LOAD_DISPATCH",
            signal_type="delta",
            intervals=[
                {"dtstart": start, "duration": timedelta(minutes=minutes), "signal_payload": kw_delta}
            ],
            callback=record,
            market_context="oadr://grid.example/flex",
            **extra,
        )

    def __enter__(self) -> Vtn:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.run(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def vtn() -> Iterator[Vtn]:
    with Vtn() as server:
        yield server


@pytest.fixture
def run_ven(vtn: Vtn) -> Iterator[Callable[..., openadr.Ven]]:
    """Start our VEN in the VTN's loop (as `manage.py openadr_ven` would, in-process); stopped after."""
    started: list[tuple[asyncio.Event, Any]] = []

    def start(**overrides: Any) -> openadr.Ven:
        config = openadr.VenConfig(
            vtn_url=vtn.url,
            ven_name="test-ven",
            answer_wait=2.0,
            relay_interval=0.3,
            report_min_period=timedelta(seconds=1),
            retry_min=0.5,
        )
        ven = openadr.Ven(openadr.VenConfig(**{**config.__dict__, **overrides}))
        stop = asyncio.Event()
        started.append((stop, asyncio.run_coroutine_threadsafe(ven.serve(stop), vtn.loop)))
        until(
            lambda: vtn.registrations and ven.client and ven.client.registration_id, 15, "the VEN registering"
        )
        return ven

    yield start
    for stop, future in started:
        vtn.loop.call_soon_threadsafe(stop.set)
        future.result(15)


@pytest.fixture
def policy_on() -> None:
    permissive_policy()


def a_start(minutes: int) -> datetime:
    """Soon, in whole seconds, with the event inside one local day (the policy's hours are per day)."""
    tz = ZoneInfo(settings.TIME_ZONE)
    start = (timezone.now() + timedelta(seconds=20)).replace(microsecond=0)
    if start.astimezone(tz).date() != (start + timedelta(minutes=minutes)).astimezone(tz).date():
        midnight = datetime.combine(start.astimezone(tz).date() + timedelta(days=1), datetime.min.time(), tz)
        start = midnight.astimezone(UTC) + timedelta(seconds=20)
    return start


# --- Reading events (no network) --------------------------------------------------------------------


def test_a_load_dispatch_delta_in_watts_is_read_as_kw() -> None:
    signal = {
        "signal_name": "LOAD_DISPATCH",
        "signal_type": "delta",
        "measurement": {"unit": "W", "scale": "none"},
        "intervals": [{"signal_payload": -15000.0}, {"signal_payload": -25000.0}, {"signal_payload": 0.0}],
    }
    assert openadr.requested_reduction_kw([signal]) == 25.0


def test_simple_levels_need_a_configured_kw() -> None:
    signal = {"signal_name": "SIMPLE", "signal_type": "level", "intervals": [{"signal_payload": 2}]}
    assert openadr.requested_reduction_kw([signal], simple_level_kw={1: 10, 2: 20}) == 20.0
    with pytest.raises(openadr.EventNotUnderstood, match="SIMPLE level 2 has no kW"):
        openadr.requested_reduction_kw([signal])


def test_a_price_signal_or_a_load_increase_is_not_a_reduction() -> None:
    price = {
        "signal_name": "ELECTRICITY_PRICE",
        "signal_type": "price",
        "intervals": [{"signal_payload": 0.3}],
    }
    increase = {"signal_name": "LOAD_DISPATCH", "signal_type": "delta", "intervals": [{"signal_payload": 5}]}
    for signal in (price, increase):
        with pytest.raises(openadr.EventNotUnderstood, match="no load reduction"):
            openadr.requested_reduction_kw([signal])


def test_the_response_deadline_is_the_start_less_the_ramp_up() -> None:
    start = datetime(2025, 6, 18, 13, 0, tzinfo=UTC)
    fields = openadr.invitation_fields(
        {
            "event_descriptor": {"event_id": "e-1", "market_context": "oadr://x/prog"},
            "active_period": {
                "dtstart": start,
                "duration": timedelta(hours=1),
                "ramp_up_period": timedelta(minutes=10),
            },
            "event_signals": [
                {
                    "signal_name": "LOAD_DISPATCH",
                    "signal_type": "delta",
                    "intervals": [{"signal_payload": -7}],
                }
            ],
        }
    )
    assert fields == {
        "reduction_kw": 7.0,
        "start": start,
        "end": start + timedelta(hours=1),
        "response_deadline": start - timedelta(minutes=10),
        "programme": "oadr://x/prog",
        "baseline_method": None,  # the programme's (DR_PROGRAMME_BASELINES)
        "source": "openadr",
        "external_id": "e-1",
    }


# --- Against the VTN ------------------------------------------------------------------------------


@TRANSACTIONAL
def test_an_event_the_policy_covers_is_opted_in_runs_and_completes(
    vtn: Vtn, run_ven: Callable[..., openadr.Ven], loads: datetime, policy_on: None
) -> None:
    run_ven()
    assert vtn.registrations[0]["ven_name"] == "test-ven"
    # openleadr offers the reports after the registration, which is all run_ven waits for.
    offers = until(lambda: vtn.report_offers, 15, "the VEN offering its report")
    assert offers == [("building", "RealPower", "k W")]
    start = a_start(minutes=3)

    event_id = vtn.add_event(-20.0, start, minutes=3)

    assert until(lambda: vtn.opts.get(event_id), 20, "the VTN receiving the answer") == "optIn"
    invitation = Invitation.objects.get(source="openadr", external_id=event_id)
    assert (invitation.status, invitation.answered_by) == ("accepted", "policy")
    assert (invitation.reduction_kw, invitation.start, invitation.end) == (
        20.0,
        start,
        start + timedelta(minutes=3),
    )
    assert invitation.programme == "oadr://grid.example/flex"
    assert invitation.reported_at is not None
    event = DREvent.objects.get(invitation=invitation)
    assert event.status == "scheduled"

    assert services.events_tick(now=start + timedelta(seconds=1))["activated"] == 1
    assert list(DispatchCommand.objects.values_list("device__name", "action", "kw")) == [
        ("ahu", "shed", 20.0)
    ]
    assert services.events_tick(now=event.end + timedelta(seconds=1))["completed"] == 1
    event.refresh_from_db()
    assert event.status == "completed"
    assert event.performance is not None

    # The metered load of the flexible devices: 40 + 20 + 8 kW.
    values = until(lambda: list(vtn.values), 15, "the VTN receiving a load report")
    assert values[-1][1] == 68.0


@TRANSACTIONAL
def test_an_event_the_policy_declines_is_opted_out(
    vtn: Vtn, run_ven: Callable[..., openadr.Ven], loads: datetime, policy_on: None
) -> None:
    run_ven()
    event_id = vtn.add_event(-500.0, a_start(minutes=3), minutes=3)

    assert until(lambda: vtn.opts.get(event_id), 20, "the VTN receiving the answer") == "optOut"
    invitation = Invitation.objects.get(source="openadr", external_id=event_id)
    assert (invitation.status, invitation.answered_by) == ("declined", "policy")
    assert invitation.reason.startswith("needs 500 kW")
    assert not DREvent.objects.exists()


@TRANSACTIONAL
def test_an_operator_answer_given_later_is_relayed_to_the_vtn(
    vtn: Vtn, run_ven: Callable[..., openadr.Ven], loads: datetime
) -> None:
    # The policy is disabled: nobody answers within answer_wait, so the VEN sends nothing yet.
    ven = run_ven(answer_wait=0.3)
    start = a_start(minutes=3)
    event_id = vtn.add_event(-10.0, start, minutes=3)
    invitation = until(
        lambda: Invitation.objects.filter(source="openadr", external_id=event_id).first(),
        20,
        "the invitation",
    )
    until(lambda: event_id in ven._deferred, 10, "the answer being deferred")
    time.sleep(1.5)  # a poll or two: openleadr must not have sent its default optOut
    assert event_id not in vtn.opts
    assert invitation.status == "pending"

    services.invitation_accept(invitation=invitation, answered_by="operator:op")

    assert until(lambda: vtn.opts.get(event_id), 15, "the relayed answer") == "optIn"
    # The VEN marks the answer reported once the VTN has taken it: just after the VTN saw it.
    until(
        lambda: Invitation.objects.filter(pk=invitation.pk, reported_at__isnull=False).exists(),
        10,
        "the answer marked as reported",
    )
    assert ven.relayed == [(event_id, "optIn")]
    assert DREvent.objects.get(invitation=invitation).status == "scheduled"


@TRANSACTIONAL
def test_the_vtn_cancelling_an_accepted_event_cancels_the_dr_event(
    vtn: Vtn, run_ven: Callable[..., openadr.Ven], loads: datetime, policy_on: None
) -> None:
    run_ven()
    event_id = vtn.add_event(-20.0, a_start(minutes=3), minutes=3)
    until(lambda: vtn.opts.get(event_id), 20, "the opt-in")
    event = DREvent.objects.get(invitation__external_id=event_id)

    vtn.call(vtn.server.cancel_event, VEN_ID, event_id)

    until(lambda: DREvent.objects.get(pk=event.pk).status == "cancelled", 15, "the DR event's cancellation")
    assert "cancelled by openadr" in DREvent.objects.get(pk=event.pk).note


@TRANSACTIONAL
def test_no_load_is_reported_without_fresh_readings(
    vtn: Vtn, run_ven: Callable[..., openadr.Ven], plant: dict[str, FlexibleDevice]
) -> None:
    power("ahu-power", 40, timezone.now() - timedelta(hours=2))
    ven = run_ven()
    assert ven.client is not None
    # openleadr schedules its polling and sampling jobs just after the registration is set.
    until(ven.client.scheduler.get_jobs, 5, "the VEN scheduling its polls and samples")
    time.sleep(2.5)  # two sampling periods of 1 s
    assert vtn.values == []
    assert vtn.report_offers == [("building", "RealPower", "k W")]


@pytest.mark.django_db(databases="__all__")
def test_the_metered_load_counts_only_fresh_readings_of_enabled_devices(loads: datetime) -> None:
    assert openadr.metered_load_kw() == 68.0
    FlexibleDevice.objects.filter(name="ahu").update(enabled=False)
    assert openadr.metered_load_kw() == 28.0
    assert openadr.metered_load_kw(now=loads + timedelta(hours=1)) is None


@pytest.mark.e2e
@TRANSACTIONAL
def test_the_openadr_ven_command_registers_with_the_vtn(
    vtn: Vtn, start_process: Any, loads: datetime
) -> None:
    ven = start_process(
        "openadr_ven",
        "manage.py",
        "openadr_ven",
        env=subprocess_env(OPENADR_VTN_URL=vtn.url, OPENADR_VEN_NAME="command-ven"),
    )
    until(lambda: vtn.registrations, 30, "the command registering")
    assert vtn.registrations[0]["ven_name"] == "command-ven"
    ven.wait_for(lambda out: "registered with" in out, timeout=15, what="the VEN logging its registration")
    ven.stop()
    assert "OpenADR VEN stopped." in ven.output()
