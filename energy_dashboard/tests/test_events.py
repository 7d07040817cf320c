"""The event bus: topics exist and events never escape a rolled-back transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from energy_dashboard.core import events


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        self.calls.append(kwargs)


@pytest.fixture
def recorder() -> Any:
    rec = Recorder()
    events.system_events.connect(rec, dispatch_uid="test-recorder")
    yield rec
    events.system_events.disconnect(dispatch_uid="test-recorder")


def test_every_seed_topic_is_a_signal_with_documented_arguments() -> None:
    assert set(events.TOPICS) == {
        "energy_data",
        "sensor_events",
        "dr_events",
        "data_ingestion",
        "room_metrics",
        "system_events",
    }
    source = Path(events.__file__).read_text()
    for name, signal in events.TOPICS.items():
        assert signal is getattr(events, name)
        # An attribute docstring: the string literal right after the assignment.
        docstring = source.split(f"{name} = Signal()\n")[1].split('"""')[1]
        assert "Keyword arguments" in docstring, name


@pytest.mark.django_db(transaction=True, databases=["default", "sensors"])
def test_event_sent_after_commit(recorder: Recorder) -> None:
    with transaction.atomic(using="sensors"):
        events.send_on_commit(events.system_events, sender=None, using="sensors", event="x", detail={})
        assert recorder.calls == []  # not before the commit
    assert recorder.calls == [{"event": "x", "detail": {}}]


@pytest.mark.django_db(transaction=True, databases=["default", "sensors"])
def test_receiver_never_sees_event_of_rolled_back_transaction(recorder: Recorder) -> None:
    def fails_after_sending() -> None:
        with transaction.atomic(using="sensors"):
            events.send_on_commit(events.system_events, sender=None, using="sensors", event="lost", detail={})
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        fails_after_sending()
    assert recorder.calls == []


@pytest.mark.django_db(transaction=True, databases=["default", "sensors"])
def test_event_in_rolled_back_savepoint_is_dropped_while_outer_commit_sends(recorder: Recorder) -> None:
    with transaction.atomic(using="sensors"):
        events.send_on_commit(events.system_events, sender=None, using="sensors", event="kept", detail={})
        try:
            with transaction.atomic(using="sensors"):
                events.send_on_commit(
                    events.system_events, sender=None, using="sensors", event="inner", detail={}
                )
                raise ValueError
        except ValueError:
            pass
    assert [c["event"] for c in recorder.calls] == ["kept"]


@pytest.mark.django_db(transaction=True, databases=["default", "sensors"])
def test_failing_receiver_does_not_stop_the_others(recorder: Recorder) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("broken receiver")

    events.system_events.connect(broken, dispatch_uid="test-broken")
    try:
        events.send_on_commit(events.system_events, sender=None, using="sensors", event="y", detail={})
    finally:
        events.system_events.disconnect(dispatch_uid="test-broken")
    assert [c["event"] for c in recorder.calls] == ["y"]
