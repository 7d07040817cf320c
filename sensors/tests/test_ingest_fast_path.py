"""The ingest's fast paths give what the general ones give: the all-new COPY vs the staged
upsert, the per-batch timestamp and unit caches vs checking each item, last_seen by arrays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from energy_dashboard.core import events
from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import rules, services, storage
from sensors.models import DirtyBucket, Reading, Sensor, parse_pks

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
# Values whose text form must round-trip exactly through COPY and the staged INSERT alike.
AWKWARD = [0.1, -3.5e-7, 1e7 / 3, 123456789.123456, 0.0, -0.0, 2.5e-300, 99.99999999999999]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(autouse=True, params=["one statement", "copy"])
def postgresql_path(request: Any, monkeypatch: Any) -> str:
    """Each test on both of PostgreSQL's new-batch paths: small batches are one INSERT ...
    ON CONFLICT statement, larger ones COPY (on SQLite both are the staged path)."""
    monkeypatch.setattr(storage, "SMALL_BATCH", 10**6 if request.param == "one statement" else 0)
    return str(request.param)


@pytest.fixture
def lab() -> None:
    services.room_create(name="lab")
    for sensor_id in ("p1", "p2"):
        services.sensor_register(sensor_id=sensor_id, kind="power", room_name="lab")


def pk(sensor_id: str) -> int:
    return Sensor.objects.get(sensor_id=sensor_id).pk


def points(sensor_pk: int, values: list[float], step: timedelta = timedelta(minutes=37)) -> list[rules.Point]:
    # Microseconds and several hours, so marks of more than one window and exact instants count.
    return [
        (i, sensor_pk, "power", T0 + i * step + timedelta(microseconds=7 * i), value, i % 3 == 0)
        for i, value in enumerate(values)
    ]


def stored(sensor_pk: int) -> list[tuple[datetime, float, bool]]:
    return list(
        Reading.objects.filter(sensor_id=sensor_pk)
        .order_by("timestamp")
        .values_list("timestamp", "value", "estimated")
    )


def marks(sensor_pk: int) -> set[tuple[str, datetime]]:
    return {
        (metric, bucket)
        for metric, bucket, ids in DirtyBucket.objects.values_list("metric", "bucket", "sensor_ids")
        if sensor_pk in parse_pks(ids)
    }


@pytest.mark.usefixtures("lab")
def test_all_new_batch_stores_and_marks_what_the_staged_path_does() -> None:
    p1, p2 = pk("p1"), pk("p2")
    with transaction.atomic(using="sensors"), connections["sensors"].cursor() as cursor:
        staged = storage._write_staged(cursor, points(p1, AWKWARD), connections["sensors"].vendor)
    with transaction.atomic(using="sensors"):
        fast = storage.write(points(p2, AWKWARD))

    assert stored(p2) == stored(p1)
    assert [value for _, value, _ in stored(p2)] == AWKWARD  # bit for bit, not approximately
    assert marks(p2) == marks(p1)
    assert len(marks(p2)) == 5  # 8 points 37 minutes apart span five hours
    assert fast.conflicts == staged.conflicts == 0
    assert [row[1:] for row in fast.inserted] == [row[1:] for row in staged.inserted]


@pytest.mark.usefixtures("lab")
def test_all_new_batch_takes_its_fast_path_on_postgresql(postgresql_path: str) -> None:
    connection = connections["sensors"]
    batch = points(pk("p1"), [1.0, 2.0, 3.0])
    with CaptureQueriesContext(connection) as queries, transaction.atomic(using="sensors"):
        written = storage.write(batch)
    sql = [query["sql"] for query in queries.captured_queries if "SAVEPOINT" not in query["sql"]]
    assert any(storage.STAGING in q for q in sql) is (connection.vendor != "postgresql")
    if connection.vendor == "postgresql":
        if postgresql_path == "copy":
            assert any(q.startswith("COPY") for q in sql)
        else:  # one statement stores the readings and marks their hours; nothing else runs
            assert len(sql) == 1 and "unnest" in sql[0] and DirtyBucket._meta.db_table in sql[0]
    assert len(written.inserted) == 3


@pytest.mark.usefixtures("lab")
def test_batch_with_stored_points_falls_back_and_counts_them() -> None:
    p1 = pk("p1")
    first = points(p1, [1.0, 2.0])
    with transaction.atomic(using="sensors"):
        storage.write(first)
    marks_before = DirtyBucket.objects.count()
    # A repeat, a conflicting value and two new points: the COPY fails on the repeat, its
    # savepoint is rolled back, and the staged path stores exactly the new ones.
    again = [first[0], (*first[1][:4], 99.0, first[1][5]), *points(p1, [0, 0, 5.0, 6.0])[2:]]
    with transaction.atomic(using="sensors"):
        written = storage.write(again)

    assert [row[3] for row in written.inserted] == [5.0, 6.0]
    assert written.conflicts == 1
    assert [value for _, value, _ in stored(p1)] == [1.0, 2.0, 5.0, 6.0]
    assert DirtyBucket.objects.count() > marks_before


@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize("piece", [1, 3, 8])
def test_a_copy_sent_in_pieces_stores_every_row_and_falls_back_from_its_last(
    monkeypatch: Any, piece: int
) -> None:
    monkeypatch.setattr(storage, "COPY_PIECE", piece)
    p1 = pk("p1")
    connection = connections["sensors"]
    with CaptureQueriesContext(connection) as queries, transaction.atomic(using="sensors"):
        written = storage.write(points(p1, AWKWARD))
    assert [value for _, value, _ in stored(p1)] == AWKWARD
    assert len(written.inserted) == len(AWKWARD)
    # On PostgreSQL the pieces made one valid COPY: the batch did not fall back to staging.
    staged = any(storage.STAGING in query["sql"] for query in queries.captured_queries)
    assert staged is (connection.vendor != "postgresql")
    # Eight new points before T0 and the stored one at T0: in key order the stored point is
    # last, so the COPY fails only after its other pieces were sent; the staged path then
    # stores the eight.
    earlier = [(i, p1, "power", T0 - timedelta(hours=8 - i), float(i), False) for i in range(8)]
    with transaction.atomic(using="sensors"):
        written = storage.write([*earlier, points(p1, AWKWARD)[0]])
    assert [row[3] for row in written.inserted] == [float(i) for i in range(8)]
    assert len(stored(p1)) == len(AWKWARD) + 8


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_repeats_inside_a_batch_are_left_out_counted_and_the_first_value_kept() -> None:
    p1 = pk("p1")
    a, b, c = points(p1, [1.0, 2.0, 3.0])
    batch = [a, b, (9, *a[1:]), (10, *b[1:4], 7.0, b[5]), c]  # a again; b with another value
    connection = connections["sensors"]
    with CaptureQueriesContext(connection) as queries, transaction.atomic(using="sensors"):
        written = storage.write(batch)
    assert [row[3] for row in written.inserted] == [1.0, 2.0, 3.0]
    assert (written.repeats, written.repeat_conflicts, written.conflicts) == (1, 1, 0)
    assert [value for _, value, _ in stored(p1)] == [1.0, 2.0, 3.0]
    # On PostgreSQL's COPY path the COPY itself skips the repeats: a repeat is not taken for
    # a stored point (no staging).
    sql = [query["sql"] for query in queries.captured_queries]
    assert any(storage.STAGING in q for q in sql) is (connection.vendor != "postgresql")
    # A stored point and its repeat: one duplicate of the store, one of the batch.
    with transaction.atomic(using="sensors"):
        again = storage.write([a, (11, *a[1:])])
    assert (again.inserted, again.repeats, again.conflicts) == ([], 1, 0)
    assert services.readings_ingest(
        readings=[
            {"sensor_id": "p2", "metric": "power", "timestamp": iso(T0), "value": 1.0},
            {"sensor_id": "p2", "metric": "power", "timestamp": iso(T0), "value": 1.0},
            {"sensor_id": "p2", "metric": "power", "timestamp": iso(T0), "value": 5.0},
            {"sensor_id": "p1", "metric": "power", "timestamp": iso(a[3]), "value": 1.0},
        ]
    ) == {"accepted": 1, "duplicates": 2, "conflicts": 1, "rejected": []}


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_api_summary_of_a_partly_stored_batch() -> None:
    def item(minute: int, value: float) -> dict[str, Any]:
        return {
            "sensor_id": "p1",
            "metric": "power",
            "timestamp": iso(T0 + timedelta(minutes=minute)),
            "value": value,
        }

    assert services.readings_ingest(readings=[item(0, 1), item(1, 2)])["accepted"] == 2
    result = services.readings_ingest(readings=[item(2, 3), item(0, 1), item(1, 7), item(3, 4), item(3, 4)])
    assert result == {"accepted": 2, "duplicates": 2, "conflicts": 1, "rejected": []}


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_event_lists_the_readings_in_batch_order(django_capture_on_commit_callbacks: Any) -> None:
    # The COPY writes in key order; the event must still follow the batch.
    items = [
        {"sensor_id": sensor, "metric": "power", "timestamp": iso(T0 - timedelta(minutes=m)), "value": m}
        for m, sensor in [(1, "p2"), (5, "p1"), (3, "p2"), (2, "p1")]
    ]
    heard: list[dict[str, Any]] = []
    events.energy_data.connect(lambda sender, **kw: heard.append(kw), dispatch_uid="t", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True, using="sensors"):
            services.readings_ingest(readings=items)
    finally:
        events.energy_data.disconnect(dispatch_uid="t")
    assert [(r["sensor_id"], r["value"]) for r in heard[0]["readings"]] == [
        ("p2", 1),
        ("p1", 5),
        ("p2", 3),
        ("p1", 2),
    ]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_shared_timestamps_and_units_give_each_item_its_own_verdict() -> None:
    future = iso(timezone.now() + timedelta(hours=2))
    epoch = int(T0.timestamp())
    items: list[Any] = [
        {"sensor_id": "p1", "metric": "power", "timestamp": future, "value": 1},
        {"sensor_id": "p2", "metric": "power", "timestamp": future, "value": 1},
        {"sensor_id": "p1", "metric": "power", "timestamp": "soon", "value": 1},
        {"sensor_id": "p2", "metric": "power", "timestamp": "soon", "value": 1},
        {"sensor_id": "p1", "metric": "power", "timestamp": epoch, "value": 1.5, "unit": "kW"},
        {"sensor_id": "p2", "metric": "power", "timestamp": float(epoch), "value": 1.5, "unit": "kW"},
        {"sensor_id": "p1", "metric": "energy", "timestamp": epoch, "value": 1.5, "unit": "kW"},
        {"sensor_id": "p1", "metric": "temperature", "timestamp": epoch, "value": 71.3, "unit": "°F"},
        {"sensor_id": "p2", "metric": "temperature", "timestamp": epoch, "value": 900, "unit": "°F"},
        {"sensor_id": "p1", "metric": "power", "timestamp": True, "value": 1},
        {"sensor_id": "p1", "metric": ["power"], "timestamp": epoch, "value": 1},
        {"sensor_id": "p1", "metric": "power", "timestamp": [epoch], "value": 1},
    ]
    batch = rules.validate(items, storage.sensor_refs(["p1", "p2"]))
    reasons = {r["index"]: r["reason"] for r in batch.rejected}

    assert reasons[0] == reasons[1] and "in the future" in reasons[0]
    assert reasons[2] == reasons[3] == "timestamp 'soon' is not ISO 8601"
    assert reasons[6] == "unit 'kW' is not one of ['kwh', 'mwh', 'wh'] for energy"
    assert "outside the physical range" in reasons[8]
    assert reasons[9] == reasons[11] == "timestamp must be ISO 8601 with an offset, or epoch seconds"
    assert reasons[10].startswith("metric ['power'] is not one of")
    assert sorted(reasons) == [0, 1, 2, 3, 6, 8, 9, 10, 11]
    assert [(p[0], p[2], p[3], p[4]) for p in batch.points] == [
        (4, "power", T0, 1500.0),
        (5, "power", T0, 1500.0),
        (7, "temperature", T0, (71.3 - 32.0) * 5.0 / 9.0),
    ]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_unhashable_sensor_id_or_metric_is_refused_not_a_crash() -> None:
    good = {"sensor_id": "p1", "metric": "power", "timestamp": iso(T0), "value": 1}
    result = services.readings_ingest(
        readings=[good, {**good, "sensor_id": ["p1"]}, {**good, "metric": {"power": 1}}]
    )
    assert result["accepted"] == 1
    assert [r["index"] for r in result["rejected"]] == [1, 2]
    assert result["rejected"][0]["reason"] == "sensor_id is missing"


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_last_seen_only_moves_forward() -> None:
    Sensor.objects.filter(sensor_id="p1").update(last_seen=T0 + timedelta(hours=2))

    def send(minute: int) -> None:
        services.readings_ingest(
            readings=[
                {
                    "sensor_id": s,
                    "metric": "power",
                    "timestamp": iso(T0 + timedelta(minutes=minute)),
                    "value": 1,
                }
                for s in ("p1", "p2")
            ]
        )

    send(0)
    assert Sensor.objects.get(sensor_id="p1").last_seen == T0 + timedelta(hours=2)
    assert Sensor.objects.get(sensor_id="p2").last_seen == T0
    send(180)
    assert Sensor.objects.get(sensor_id="p1").last_seen == T0 + timedelta(hours=3)
    assert Sensor.objects.get(sensor_id="p2").last_seen == T0 + timedelta(hours=3)


@pytest.mark.skipif("connections['sensors'].vendor != 'postgresql'", reason="a PostgreSQL storage parameter")
def test_sensor_rows_leave_room_for_heap_only_last_seen_updates(postgresql_path: str) -> None:
    # Migration 0004: with full pages most last_seen updates rewrote all eight indexes.
    with connections["sensors"].cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [Sensor._meta.db_table])
        assert cursor.fetchone()[0] == ["fillfactor=50"]


@pytest.mark.skipif("connections['sensors'].vendor != 'postgresql'", reason="a PostgreSQL index method")
def test_the_time_index_of_readings_is_brin_on_postgresql() -> None:
    # Migration 0005: a B-tree on a time-ordered table cost a tenth of each COPY.
    with connections["sensors"].cursor() as cursor:
        cursor.execute(
            "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE c.relname = %s",
            ["reading_timestamp"],
        )
        assert cursor.fetchone()[0] == "brin"
