"""Hypothesis: extreme numbers and dates thrown at every write serializer of the DR API.

For each body, either the serializer refuses it with errors that name its fields, or what it
accepts goes through the service the view calls (which may still refuse, with named fields or
for the state of the devices) and then through the periodic jobs at the instants that matter
(now, the deadline, the start, the end), which must handle it without raising and without
reporting an error: an accepted value is one the product computes with.

Bounded: 100 examples per serializer, derandomized (the same examples on every run, no
example database), no deadline (the jobs take tens of milliseconds). Each example runs in
savepoints rolled back at its end, on the fixtures of its test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from datetime import timezone as fixed_offset
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from demand_response import services
from demand_response.models import FlexibleDevice
from demand_response.serializers import (
    AcceptSerializer,
    CancelSerializer,
    DeclineSerializer,
    EventCreateSerializer,
    FlexibilityQuery,
    FlexibleDeviceSerializer,
    InvitationCreateSerializer,
    PolicySerializer,
)
from demand_response.tests.helpers import permissive_policy

pytestmark = pytest.mark.django_db(databases="__all__")

BOUNDED = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    # The fixtures (devices, readings) are built once per test and every example rolls back.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- What a JSON body can carry -------------------------------------------------------------------

EXTREME_NUMBERS = st.sampled_from(
    [
        *(0, -0.0, 1, -1, 5e-324, 1e-300, 0.001, 0.0009, 1e6, 1e6 + 1, 1e308, -1e308, 1.7976931348623157e308),
        *(2**31 - 1, 2**31, 2**62, 2**63 - 1, 2**63, -(2**63), 2**64 - 1, 10080, 10081, 1052640, 1052641),
    ]
)
# JSON has no NaN or infinity; they arrive as strings, and so do numbers that overflow a float.
NUMBER_STRINGS = st.sampled_from(
    ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e999", "-1e999", "-0", "1e-400", ""]
)
NUMBERS = st.one_of(
    EXTREME_NUMBERS,
    NUMBER_STRINGS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    # Ordinary values, so that acceptance is explored as much as refusal.
    st.floats(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=20_000),
)
OFFSETS = st.sampled_from(
    [
        timedelta(0),
        timedelta(hours=14),
        -timedelta(hours=12),
        timedelta(hours=23, minutes=59),
        -timedelta(hours=23, minutes=59),
        -timedelta(minutes=36, seconds=45),  # Lisbon's local mean time
    ]
)
AT_THE_EDGES = [
    (datetime(1, 1, 1), datetime(1, 1, 3)),
    (datetime(9999, 12, 29), datetime(9999, 12, 31, 23, 59, 59, 999_999)),
    (datetime(1970, 12, 30), datetime(1971, 1, 2)),  # limits.EARLIEST
    (datetime(2199, 12, 30), datetime(2200, 1, 2)),  # limits.LATEST
    (datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)),
]
EXTREME_DATES = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00Z",
            "0001-01-02T00:00:00-12:00",
            "9999-12-31T23:59:59-12:00",
            "9999-12-31T23:59:59.999999Z",
            "9999-12-31T00:00:00+14:00",
            "9999-12-30T00:00:00Z",
            "1970-12-31T23:59:59Z",
            "1971-01-01T00:00:00Z",
            "2199-12-31T23:59:59Z",
            "2200-01-01T00:00:00Z",
            "not a date",
            "",
        ]
    ),
    *(
        st.builds(
            lambda moment, offset: moment.replace(tzinfo=fixed_offset(offset)).isoformat(),
            st.datetimes(min_value=low, max_value=high),
            OFFSETS,
        )
        for low, high in AT_THE_EDGES
    ),
    st.datetimes(min_value=datetime(9999, 12, 30), max_value=datetime(9999, 12, 31, 23)).map(
        datetime.isoformat
    ),
)


def near(anchor: str, low: int, high: int) -> st.SearchStrategy[tuple[str, int, timedelta]]:
    """Seconds from `anchor` ("now", or the body's "start"), in an extreme offset; resolved when
    the example runs (resolve())."""
    return st.tuples(st.just(anchor), st.integers(min_value=low, max_value=high), OFFSETS)


DATES = st.one_of(EXTREME_DATES, near("now", -(10**8), 10**8))
DEVICE_NAMES = st.one_of(
    st.lists(st.sampled_from(["ahu", "ev", "lights", "ghost", "AHU", "a b", ""]), max_size=4),
    st.just(["ahu"] * 1001),
)
SOME_DEVICES = st.lists(st.sampled_from(["ahu", "ev", "lights"]), min_size=1, max_size=3, unique=True)


def corrupted(
    ordinary: st.SearchStrategy[dict[str, Any]], extreme: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """An ordinary body with up to two fields replaced by extreme values (or removed, when the
    value drawn is "absent"): acceptance is explored as much as refusal."""
    corruption = st.sets(st.sampled_from(sorted(extreme)), max_size=2).flatmap(
        lambda keys: st.fixed_dictionaries({key: extreme[key] for key in sorted(keys)})
    )
    return st.builds(lambda body, bad: {**body, **bad}, ordinary, corruption)


def resolve(body: dict[str, Any], base: datetime) -> dict[str, Any]:
    """The body as the API would receive it: near() values as ISO 8601 text, "absent" dropped."""
    start = base
    if isinstance(body.get("start"), tuple):
        _, seconds, _ = body["start"]
        start = base + timedelta(seconds=seconds)
    elif isinstance(body.get("start"), str):
        # An extreme start: the fields relative to it follow it to the calendar's edges.
        with suppress(ValueError):
            parsed = datetime.fromisoformat(body["start"])
            start = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    out = {}
    for key, value in body.items():
        if value == "absent":
            continue
        if isinstance(value, tuple):
            anchor, seconds, offset = value
            try:
                moment = (base if anchor == "now" else start) + timedelta(seconds=seconds)
                out[key] = moment.astimezone(fixed_offset(offset)).isoformat()
            except OverflowError:  # past the calendar: send the start itself
                out[key] = body["start"]
        else:
            out[key] = value
    return out


@contextmanager
def rolled_back() -> Iterator[None]:
    """Every write of the example, on every database, undone at its end."""
    with ExitStack() as stack:
        for alias in django_settings.DATABASES:
            stack.enter_context(transaction.atomic(using=alias))
        yield
        for alias in django_settings.DATABASES:
            transaction.set_rollback(True, using=alias)


def refused_naming_fields(serializer: serializers.Serializer[Any]) -> None:
    """Invalid, with every error under one of its fields (or the body as a whole)."""
    event("refused by the serializer")
    assert serializer.errors
    assert set(serializer.errors) <= {*serializer.fields, "non_field_errors"}, serializer.errors


def refused_by_service(exc: services.DRError, fields: Sequence[str]) -> None:
    """A service refusal after the serializer accepted: a state conflict, or named fields."""
    event("refused by the service")
    if isinstance(exc, services.Conflict) or not exc.errors:
        return  # a conflict with the devices' state, or a refusal of the whole request
    assert set(exc.errors) <= {*fields, "non_field_errors"}, exc.errors


def jobs_run_cleanly(*instants: datetime) -> None:
    """The periodic jobs, at now and at each instant: they return, reporting no error."""
    event("accepted, then run by the jobs")
    for moment in (timezone.now(), *sorted(instants)):
        for job in (services.auto_response_run, services.events_tick):
            done = job(now=moment)
            assert done["errors"] == 0, (job.__name__, moment, done)


@pytest.fixture
def policy_on(plant: dict[str, FlexibleDevice]) -> None:
    """A policy that evaluates every invitation (all days and hours, any notice, a week long)."""
    permissive_policy(max_duration_minutes=10080)


def pending_invitation(**changes: Any) -> Any:
    start = timezone.now() + timedelta(hours=2)
    return services.invitation_create(
        **{
            "reduction_kw": 5,
            "start": start,
            "end": start + timedelta(hours=1),
            "response_deadline": start,
            **changes,
        }
    )


# --- Invitations ----------------------------------------------------------------------------------

INVITATIONS = corrupted(
    st.fixed_dictionaries(
        {
            "reduction_kw": st.floats(min_value=0.001, max_value=100),
            # Soon, or at the calendar's edges with the other instants relative to it.
            "start": st.one_of(near("now", 60, 30 * 86400), EXTREME_DATES),
            "response_deadline": near("start", -3600, 0),
        }
    ).flatmap(
        lambda body: st.one_of(
            st.fixed_dictionaries({"duration_minutes": st.floats(min_value=1, max_value=600)}),
            st.fixed_dictionaries({"end": near("start", 60, 36_000)}),
        ).map(lambda window: {**body, **window})
    ),
    {
        "reduction_kw": NUMBERS,
        "start": DATES,
        "end": st.one_of(DATES, st.just("absent")),
        "duration_minutes": st.one_of(NUMBERS, st.just("absent")),
        "response_deadline": DATES,
    },
)


@BOUNDED
@given(body=INVITATIONS)
def test_invitation_bodies(loads: datetime, policy_on: None, body: dict[str, Any]) -> None:
    with rolled_back():
        serializer = InvitationCreateSerializer(data=resolve(body, timezone.now()))
        if not serializer.is_valid():
            refused_naming_fields(serializer)
            return
        try:
            invitation = services.invitation_create(**serializer.validated_data)
        except services.DRError as exc:
            refused_by_service(exc, list(serializer.fields))
            return
        jobs_run_cleanly(
            invitation.response_deadline,
            invitation.start,
            invitation.end,
            invitation.end + timedelta(minutes=1),
        )


# --- Events ---------------------------------------------------------------------------------------

EVENTS = corrupted(
    st.fixed_dictionaries(
        {
            "target_kw": st.floats(min_value=0.001, max_value=100),
            "start": st.one_of(near("now", -600, 30 * 86400), EXTREME_DATES),
            "end": near("start", 60, 7 * 86400),
        },
        optional={"devices": SOME_DEVICES},
    ),
    {"target_kw": NUMBERS, "start": DATES, "end": DATES, "devices": DEVICE_NAMES},
)


@BOUNDED
@given(body=EVENTS)
def test_event_bodies(loads: datetime, body: dict[str, Any]) -> None:
    with rolled_back():
        serializer = EventCreateSerializer(data=resolve(body, timezone.now()))
        if not serializer.is_valid():
            refused_naming_fields(serializer)
            return
        try:
            event = services.event_create(created_by="operator:fuzz", **serializer.validated_data)
        except services.DRError as exc:
            refused_by_service(exc, list(serializer.fields))
            return
        jobs_run_cleanly(event.start, event.end, event.end + timedelta(minutes=1))


# --- Devices --------------------------------------------------------------------------------------

OPTIONAL_NUMBERS = st.one_of(st.none(), NUMBERS, st.just("absent"))
DEVICES = corrupted(
    st.fixed_dictionaries(
        {
            "max_shed_kw": st.one_of(st.floats(min_value=0, max_value=100), st.just("absent")),
            "max_shed_share": st.one_of(st.floats(min_value=0.01, max_value=1), st.just("absent")),
            "priority": st.integers(min_value=0, max_value=1000),
            "min_event_minutes": st.integers(min_value=0, max_value=120),
            "max_event_minutes": st.one_of(st.none(), st.integers(min_value=120, max_value=10_080)),
        }
    ),
    {
        "max_shed_kw": OPTIONAL_NUMBERS,
        "max_shed_share": OPTIONAL_NUMBERS,
        "priority": NUMBERS,
        "min_event_minutes": NUMBERS,
        "max_event_minutes": OPTIONAL_NUMBERS,
    },
)


@BOUNDED
@given(body=DEVICES)
def test_device_bodies(loads: datetime, policy_on: None, body: dict[str, Any]) -> None:
    with rolled_back():
        serializer = FlexibleDeviceSerializer(
            data={"name": "fuzz", "sensor_id": "ev-power", **resolve(body, timezone.now())}
        )
        if not serializer.is_valid():
            refused_naming_fields(serializer)
            return
        try:
            device = services.device_create(**serializer.validated_data)
        except services.DRError as exc:
            refused_by_service(exc, list(serializer.fields))
            return
        services.flexibility_compute()
        invitation = pending_invitation(reduction_kw=3)
        start = timezone.now() - timedelta(seconds=30)
        event = services.event_create(
            target_kw=3,
            start=start,
            end=start + timedelta(minutes=max(device.min_event_minutes, 1)),
            devices=["fuzz"],
        )
        jobs_run_cleanly(invitation.start, event.end + timedelta(minutes=1))


# --- The auto-response policy ---------------------------------------------------------------------

POLICIES = corrupted(
    st.fixed_dictionaries(
        {
            "enabled": st.just(True),
            "allowed_days": st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=7),
            "allowed_from_hour": st.integers(min_value=0, max_value=12),
            "allowed_until_hour": st.integers(min_value=13, max_value=24),
            "max_duration_minutes": st.integers(min_value=1, max_value=10_080),
            "min_notice_minutes": st.integers(min_value=0, max_value=10_000),
            "max_share": st.floats(min_value=0.01, max_value=1),
            "excluded_devices": st.lists(st.sampled_from(["lights", "ev"]), max_size=2, unique=True),
        }
    ),
    {
        "allowed_days": st.lists(st.one_of(st.integers(min_value=-1, max_value=8), NUMBERS), max_size=9),
        "allowed_from_hour": NUMBERS,
        "allowed_until_hour": NUMBERS,
        "max_duration_minutes": NUMBERS,
        "min_notice_minutes": NUMBERS,
        "max_share": NUMBERS,
        "excluded_devices": DEVICE_NAMES,
    },
)


@BOUNDED
@given(body=POLICIES)
def test_policy_bodies(loads: datetime, policy_on: None, body: dict[str, Any]) -> None:
    with rolled_back():
        serializer = PolicySerializer(services.policy_get(), data=resolve(body, timezone.now()))
        if not serializer.is_valid():
            refused_naming_fields(serializer)
            return
        try:
            services.policy_update(updated_by="operator:fuzz", **serializer.validated_data)
        except services.DRError as exc:
            refused_by_service(exc, list(serializer.fields))
            return
        invitation = pending_invitation()
        jobs_run_cleanly(invitation.response_deadline, invitation.end + timedelta(minutes=1))


# --- Answers and cancellations --------------------------------------------------------------------

TEXT = st.one_of(st.text(max_size=300), st.sampled_from(["", " ", "\x00", "a" * 5000]))


@BOUNDED
@given(
    action=st.sampled_from(["accept", "decline", "cancel"]),
    body=st.fixed_dictionaries(
        {}, optional={"devices": st.one_of(SOME_DEVICES, DEVICE_NAMES), "reason": TEXT}
    ),
)
def test_answer_bodies(loads: datetime, action: str, body: dict[str, Any]) -> None:
    chosen = {"accept": AcceptSerializer, "decline": DeclineSerializer, "cancel": CancelSerializer}[action]
    with rolled_back():
        serializer = chosen(data=body)
        if not serializer.is_valid():
            refused_naming_fields(serializer)
            return
        data = serializer.validated_data
        invitation = pending_invitation()
        try:
            if action == "accept":
                services.invitation_accept(
                    invitation=invitation,
                    answered_by="operator:fuzz",
                    reason=data["reason"],
                    devices=data.get("devices"),
                )
            elif action == "decline":
                services.invitation_decline(
                    invitation=invitation, answered_by="operator:fuzz", reason=data["reason"]
                )
            else:
                services.invitation_accept(invitation=invitation, answered_by="operator:fuzz")
                services.event_cancel(
                    event=invitation.event, cancelled_by="operator:fuzz", reason=data["reason"]
                )
        except services.DRError as exc:
            refused_by_service(exc, list(serializer.fields))
            return
        jobs_run_cleanly(invitation.start, invitation.end + timedelta(minutes=1))


# --- The flexibility query ------------------------------------------------------------------------

WINDOWS = corrupted(
    st.fixed_dictionaries(
        {
            "start": st.one_of(near("now", -30 * 86400, 30 * 86400), EXTREME_DATES),
            "end": near("start", 60, 7 * 86400),
        }
    ),
    {"start": DATES, "end": DATES},
)


@BOUNDED
@given(query=WINDOWS)
def test_flexibility_queries(loads: datetime, query: dict[str, Any]) -> None:
    checked = FlexibilityQuery(data=resolve(query, timezone.now()))
    if not checked.is_valid():
        refused_naming_fields(checked)
        return
    event("accepted, then computed")
    window = checked.validated_data
    flexibility = services.flexibility_compute(start=window["start"], end=window["end"])
    assert flexibility.as_dict()["start"] is not None
