"""The file pipeline on local files: ledger, duplicates, overlaps, rejection, re-processing,
unknown meters, the bus event, and the `ingest_file` command."""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from energy_dashboard.core import events
from energy_dashboard.testing import AFTER_FIXED_DATES
from ingestion import services
from ingestion.models import IngestedFile
from ingestion.tests.helpers import meter_file, stored_rows
from sensors import services as sensors

pytestmark = pytest.mark.django_db(databases="__all__")

LISBON = ZoneInfo("Europe/Lisbon")
SAMPLE = Path(__file__).resolve().parent / "data" / "sample_day.slg_v2"  # the format's sample day


def slg_bytes(cpe: str, first: datetime, count: int, *, base: int = 100) -> bytes:
    """A valid file of `count` quarter hours from `first` (UTC) for one meter; every 7th estimated."""
    return meter_file(cpe, first, count, base=base, estimated_every=7)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, bytes], Path]:
    def make(name: str, content: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return make


def stored(sensor_id: str) -> list[tuple[datetime, float, str]]:
    return [
        (datetime.fromisoformat(r["timestamp"]), r["value"], r["quality"]) for r in stored_rows([sensor_id])
    ]


def test_sample_file_is_imported_and_registers_its_meter(write: Any) -> None:
    row = services.file_import_path(path=SAMPLE)
    assert row.status == IngestedFile.Status.IMPORTED, row.message
    assert row.records == 192 and row.inserted == 192 and row.already_present == 0
    assert row.sha256 and Path(row.stored_path).read_bytes() == SAMPLE.read_bytes()
    meters = {m["external_id"]: m for m in sensors.sensors_list() if m["external_id"]}
    assert set(meters) == {"PT0002000012345678AB", "PT0002000087654321CD"}
    for external_id, meter in meters.items():
        assert meter["kind"] == "energy_meter" and meter["room__name"] is None
        assert meter["sensor_id"] == f"cpe-{external_id.lower()}"


def test_the_garbage_collector_is_paused_for_the_whole_file_and_back_on_after(monkeypatch: Any) -> None:
    # Between chunks too, where the parser thread's records would otherwise set it off.
    seen: list[bool] = []
    ingest_records = services._ingest_records

    def spy(*args: Any, **kwargs: Any) -> None:
        seen.append(gc.isenabled())
        ingest_records(*args, **kwargs)

    monkeypatch.setattr(services, "_ingest_records", spy)
    assert gc.isenabled()
    row = services.file_import_path(path=SAMPLE)
    assert row.status == IngestedFile.Status.IMPORTED, row.message
    assert seen == [False] and gc.isenabled()


def test_values_and_times_follow_the_format(write: Any) -> None:
    first = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)  # Lisbon is UTC+0 in March before the change
    row = services.file_import_path(path=write("a.slg_v2", slg_bytes("PT0001", first, 4)))
    assert row.status == "imported"
    points = stored("cpe-pt0001")
    # The file's times are the END of each quarter hour; the store labels energy with the
    # start (00:00-00:15 is 00:00). Centi-kWh become kWh.
    assert [p[0] for p in points] == [first + timedelta(minutes=15 * i) for i in range(4)]
    assert [p[1] for p in points] == [1.0, 1.01, 1.02, 1.03]
    assert points[0][2] == "estimated" and points[1][2] == "measured"


def test_the_same_file_again_is_a_duplicate_and_adds_nothing(write: Any) -> None:
    content = slg_bytes("PT0002", datetime(2026, 3, 10, tzinfo=UTC), 8)
    first = services.file_import_path(path=write("day.slg_v2", content))
    again = services.file_import_path(path=write("copy-of-day.slg_v2", content))
    assert again.status == IngestedFile.Status.DUPLICATE
    assert again.duplicate_of == first and again.inserted == 0
    assert "same content as file" in again.message
    assert len(stored("cpe-pt0002")) == 8


def test_an_overlapping_file_adds_only_the_new_points(write: Any) -> None:
    start = datetime(2026, 3, 10, tzinfo=UTC)
    services.file_import_path(path=write("a.slg_v2", slg_bytes("PT0003", start, 8)))
    # Four of these eight quarter hours are stored already, with the same values.
    overlap = slg_bytes("PT0003", start + timedelta(hours=1), 8, base=104)
    row = services.file_import_path(path=write("b.slg_v2", overlap))
    assert row.status == "imported"
    assert (row.inserted, row.already_present, row.conflicts) == (4, 4, 0)
    assert len(stored("cpe-pt0003")) == 12


def test_a_conflicting_value_is_counted_and_the_stored_one_kept(write: Any) -> None:
    start = datetime(2026, 3, 10, tzinfo=UTC)
    services.file_import_path(path=write("a.slg_v2", slg_bytes("PT0004", start, 2)))
    row = services.file_import_path(path=write("b.slg_v2", slg_bytes("PT0004", start, 2, base=500)))
    assert (row.inserted, row.already_present, row.conflicts) == (0, 0, 2)
    assert [p[1] for p in stored("cpe-pt0004")] == [1.0, 1.01]


def test_a_truncated_file_is_rejected_kept_and_imported_once_whole(write: Any) -> None:
    whole = slg_bytes("PT0005", datetime(2026, 3, 10, tzinfo=UTC), 96)
    cut = whole[: len(whole) // 2]  # a transfer cut short: no trailer
    path = write("day.slg_v2", cut)
    row = services.file_import_path(path=path)
    assert row.status == IngestedFile.Status.REJECTED
    assert "incomplete" in row.message and row.inserted == 0
    assert any(e["field"] == "trailer" or "trailer" in e["message"] for e in row.errors)
    assert stored("cpe-pt0005") == []
    # Nothing of it is stored, not even the meter it named.
    assert not [m for m in sensors.sensors_list() if m["external_id"] == "PT0005"]
    # The rejected file is kept as received, for an operator to read.
    assert Path(services.file_content(file=row)).read_bytes() == cut

    # The operator puts the full file in place of the kept one and re-processes it.
    Path(row.stored_path).write_bytes(whole)
    again = services.file_reprocess(file=IngestedFile.objects.get(pk=row.pk))
    assert again.status == "imported" and again.inserted == 96
    assert len(stored("cpe-pt0005")) == 96


def test_bad_detail_lines_reject_the_file_with_every_error_and_its_line(write: Any) -> None:
    lines = slg_bytes("PT0006", datetime(2026, 3, 10, tzinfo=UTC), 4).split(b"\r\n")
    lines[2] = lines[2][:30] + b"2460" + lines[2][34:]  # line 3: a time that does not exist
    lines[4] = lines[4][:44] + b"X" + lines[4][45:]  # line 5: an unknown reading type
    row = services.file_import_path(path=write("bad.slg_v2", b"\r\n".join(lines)))
    assert row.status == "rejected"
    assert [(e["line"], e["field"]) for e in row.errors] == [(3, "time"), (5, "reading_type")]
    assert row.error_count == 2 and stored("cpe-pt0006") == []


def test_a_source_may_import_the_valid_records_and_quarantine_the_rest(write: Any) -> None:
    from ingestion.models import RemoteSource

    source = RemoteSource.objects.create(name="partial", host="example.invalid", import_valid_records=True)
    lines = slg_bytes("PT0007", datetime(2026, 3, 10, tzinfo=UTC), 4).split(b"\r\n")
    lines[2] = lines[2][:30] + b"2460" + lines[2][34:]
    row = services.file_take(name="p.slg_v2", stream=io.BytesIO(b"\r\n".join(lines)))
    IngestedFile.objects.filter(pk=row.pk).update(source=source)
    done = services.file_process(file_id=row.pk)
    assert done.status == "imported" and done.inserted == 3 and done.quarantined == 1
    assert done.errors[0]["line"] == 3 and len(stored("cpe-pt0007")) == 3


@pytest.mark.clock(AFTER_FIXED_DATES)
def test_daylight_saving_days_store_100_and_92_quarter_hours(write: Any) -> None:
    back = datetime(2026, 10, 25, tzinfo=LISBON).astimezone(UTC)  # local midnight
    forward = datetime(2026, 3, 29, tzinfo=LISBON).astimezone(UTC)
    long_day = services.file_import_path(path=write("long.slg_v2", slg_bytes("PT0008", back, 100)))
    short_day = services.file_import_path(path=write("short.slg_v2", slg_bytes("PT0009", forward, 92)))
    assert (long_day.status, long_day.inserted) == ("imported", 100)
    assert (short_day.status, short_day.inserted) == ("imported", 92)
    points = stored("cpe-pt0008")
    # The last quarter hour (label 2400) starts at 23:45 and still belongs to the 25-hour day.
    assert points[-1][0] == datetime(2026, 10, 25, 23, 45, tzinfo=LISBON).astimezone(UTC)
    assert points[0][0] == back


def test_processing_sends_one_data_ingestion_event_per_file(
    write: Any, django_capture_on_commit_callbacks: Any
) -> None:
    heard: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    events.data_ingestion.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True, using="ingestion"):
            row = services.file_import_path(
                path=write("e.slg_v2", slg_bytes("PT0010", datetime(2026, 3, 10, tzinfo=UTC), 3))
            )
    finally:
        events.data_ingestion.disconnect(receiver)
    assert [(h["file_id"], h["status"], h["counts"]["inserted"]) for h in heard] == [(row.pk, "imported", 3)]


def test_a_file_being_processed_is_not_taken_twice(write: Any) -> None:
    row = services.file_take(
        name="x.slg_v2", stream=io.BytesIO(slg_bytes("PT0011", datetime(2026, 3, 10, tzinfo=UTC), 2))
    )
    IngestedFile.objects.filter(pk=row.pk).update(status="processing", claimed_at=datetime.now(UTC))
    assert services.file_process(file_id=row.pk).status == "processing"  # claimed: left alone
    assert stored("cpe-pt0011") == []


def test_an_abandoned_claim_is_taken_again(write: Any, settings: Any) -> None:
    row = services.file_take(
        name="y.slg_v2", stream=io.BytesIO(slg_bytes("PT0012", datetime(2026, 3, 10, tzinfo=UTC), 2))
    )
    long_ago = datetime.now(UTC) - timedelta(seconds=settings.INGESTION_CLAIM_TIMEOUT + 5)
    IngestedFile.objects.filter(pk=row.pk).update(status="processing", claimed_at=long_ago)
    done = services.file_process(file_id=row.pk)
    assert done.status == "imported" and done.attempts == 1


def test_ingest_file_command_prints_one_json_object_per_file(write: Any, capsys: Any) -> None:
    good = write("good.slg_v2", slg_bytes("PT0013", datetime(2026, 3, 10, tzinfo=UTC), 2))
    bad = write("bad.slg_v2", b"00SENDER    202603100001\r\n20PT0013")
    with pytest.raises(SystemExit) as exited:
        call_command("ingest_file", str(good), str(bad), "--json")
    assert exited.value.code == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["status"] for o in out] == ["imported", "rejected"]
    assert set(out[0]) == {"file", "status", "records", "inserted", "duplicates", "conflicts", "errors"}
    assert out[0]["inserted"] == 2 and out[0]["errors"] == []
    assert all(set(e) == {"line", "message"} for e in out[1]["errors"]) and out[1]["errors"]


def test_a_storage_error_mid_file_fails_the_file_and_stops_the_parser(write: Any, monkeypatch: Any) -> None:
    import threading

    calls = {"n": 0}
    real = sensors.readings_import

    def failing(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the database went away")
        return real(**kwargs)

    # Three chunks' worth: the second fails while the parser has more waiting.
    monkeypatch.setattr(services, "CHUNK", 100)
    monkeypatch.setattr(sensors, "readings_import", failing)
    path = write("big.slg_v2", slg_bytes("PT0014", datetime(2026, 3, 10, tzinfo=UTC), 1000))
    row = services.file_import_path(path=path)
    assert row.status == "failed" and "the database went away" in row.message
    assert stored("cpe-pt0014") == []  # the first chunk rolled back with the rest
    assert not [t for t in threading.enumerate() if t.name == "slg-parser"]


def test_of_two_identical_files_imported_at_once_the_second_to_finish_is_a_duplicate(
    monkeypatch: Any,
) -> None:
    # The interleaving two workers produce, in one thread: the second file has passed its
    # duplicate check (no imported original yet) when the first is imported in full.
    content = meter_file("PT4101", count=8)
    first = services.file_take(name="a.slg_v2", stream=io.BytesIO(content))
    second = services.file_take(name="a-again.slg_v2", stream=io.BytesIO(content))
    real = services._ingest_records
    meanwhile: list[IngestedFile] = []
    started: list[bool] = []

    def other_worker_first(*args: Any, **kwargs: Any) -> None:
        if not started:
            started.append(True)
            monkeypatch.setattr(services, "_ingest_records", real)  # the other worker's own run
            meanwhile.append(services.file_process(file_id=first.pk))
        real(*args, **kwargs)

    monkeypatch.setattr(services, "_ingest_records", other_worker_first)
    late = services.file_process(file_id=second.pk)
    assert meanwhile[0].status == "imported" and meanwhile[0].inserted == 8
    assert late.status == "duplicate" and late.duplicate_of_id == first.pk
    assert "at the same moment" in late.message and late.already_present == 8
    assert IngestedFile.objects.get(pk=second.pk).status == "duplicate"
    assert len(stored_rows(["cpe-pt4101"])) == 8


def test_the_ledger_holds_one_imported_file_per_content() -> None:
    from django.db import IntegrityError, transaction

    content = meter_file("PT4102", count=4)
    one = services.file_process(file_id=services.file_take(name="a.slg_v2", stream=io.BytesIO(content)).pk)
    other = services.file_take(name="b.slg_v2", stream=io.BytesIO(content))
    assert one.status == "imported"
    with pytest.raises(IntegrityError), transaction.atomic(using="ingestion"):
        IngestedFile.objects.filter(pk=other.pk).update(status="imported")
