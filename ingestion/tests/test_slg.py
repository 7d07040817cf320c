"""The SLG v2 reader and writer: the sample, every error, both clock changes, memory, properties."""

from __future__ import annotations

import hashlib
import io
import itertools
import pickle
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion import slg as slg_module
from ingestion.slg import (
    INTERVAL,
    Header,
    Problem,
    Record,
    SlgError,
    SlgReader,
    SlgReadError,
    SlgRejected,
    is_slg_name,
    write_slg,
)

LISBON = ZoneInfo("Europe/Lisbon")
NEW_YORK = ZoneInfo("America/New_York")
SANTIAGO = ZoneInfo("America/Santiago")  # changes at midnight: the repeated hour ends with 2400
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # changes by 30 minutes
CPE = "PT0002000012345678AB"
OTHER = "PT0002000087654321CD"
BOM = b"\xef\xbb\xbf"

# The shared sample (samples/sample_day.slg_v2: two meters, 10 March 2026, LF, padded), kept here as
# its readings so that the tests need nothing outside the repository; `test_embedded_sample_...`
# proves the bytes rebuilt from them are the sample's own.
SAMPLE_SHA256 = "fc70db8e91cceb881feaf420a03c051dcc801f8e4c33818409f9e49ff61d3646"
SAMPLE_READINGS = {
    CPE: "107 103 114 101 111 108 101 111 100 109 101 101 109 118 102 104 113 120 112 108 121 100 118 106 "
    "114 124 140 167 158 182 196 196 214 202 211 226 259 255 257 278 278 276 311 310 288 312 312 337 "
    "331 304 349 295 313 334 294 313 282 318 320 303 316 277 291 279 271 256 266 262 230 229 193 210 "
    "196 197 179 151 142 139 111 111 103 102 101 116 102 105 108 119 101 109 112 119 118 119 106 109",
    OTHER: "36 40 41 35 35 35 35 37 38 36 34 37 37 38 41 39 38 38 39 34 41 40 40 40 41 45 46 55 52 56 61 64 "
    "70 69 71 77 79 86 82 101 98 92 95 98 101 97 114 118 107 108 99 101 105 103 115 100 96 114 104 94 "
    "101 89 96 102 97 92 81 80 73 80 73 72 62 58 61 59 53 48 44 39 35 38 36 34 34 36 36 39 41 37 41 41 "
    "41 36 35 35",
}


# Building files by hand, so that the reader is not only checked against the writer ------------------


def header(sender: str = "EGAC00123", day: str = "20261025", sequence: str = "0001") -> bytes:
    return f"00{sender:<10}{day}{sequence}".ljust(100).encode("latin-1")


def detail(
    time_: str = "0015",
    day: str = "20261025",
    cpe: str = CPE,
    energy: str = "0000001234",
    kind: str = "R",
) -> bytes:
    return f"20{cpe:<20}{day}{time_}{energy}{kind}".ljust(100).encode("latin-1")


def trailer(count: int | str) -> bytes:
    text = f"{count:08d}" if isinstance(count, int) else count
    return f"99TOTAL     {text}".ljust(100).encode("latin-1")


def join(*lines: bytes, newline: bytes = b"\r\n") -> bytes:
    return b"".join(line + newline for line in lines)


def slg(*details: bytes, newline: bytes = b"\r\n") -> bytes:
    """A file with a right header and trailer around the given detail lines."""
    return join(header(), *details, trailer(len(details)), newline=newline)


def read(
    data: Any,
    tz: ZoneInfo = LISBON,
    **options: int,  # any shape, wrong ones included
) -> tuple[SlgReader, list[Record]]:
    reader = SlgReader(data, tz=tz, **options)
    return reader, list(reader)


def where(reader: SlgReader) -> list[tuple[int | None, str | None]]:
    return [(p.line, p.field) for p in reader.problems]


def labels(day_minutes: Iterable[int]) -> list[str]:
    """HHMM end labels for interval starts given in minutes after local midnight."""
    return [f"{(m + 15) // 60:02d}{(m + 15) % 60:02d}" for m in day_minutes]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local_day(tz: ZoneInfo, day: date) -> list[datetime]:
    """Every interval start (UTC) of a local day, from its midnight to the next."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=tz).astimezone(UTC)
    return [start + INTERVAL * i for i in range((end - start) // INTERVAL)]


def sample_bytes() -> bytes:
    """The shared sample file, byte for byte, built by hand (not by the writer under test)."""
    lines = [b"00EGAC00123 202603100001"]
    for cpe, readings in SAMPLE_READINGS.items():
        for label, value in zip(labels(range(0, 1440, 15)), readings.split(), strict=True):
            lines.append(f"20{cpe}20260310{label}{int(value):010d}R".encode())
    lines.append(b"99TOTAL     00000192")
    return b"".join(line.ljust(100) + b"\n" for line in lines)


def written(
    records: Iterable[tuple[str, datetime, int, bool]], tz: ZoneInfo = LISBON, **options: object
) -> bytes:
    options.setdefault("file_date", date(2026, 10, 26))
    # Options of any type: the tests hand the writer wrong ones on purpose.
    return b"".join(write_slg(records, tz=tz, **options))  # type: ignore[arg-type]


# The sample -------------------------------------------------------------------------------------------


def test_embedded_sample_is_the_shared_sample_byte_for_byte() -> None:
    data = sample_bytes()
    assert len(data) == 194 * 101 and hashlib.sha256(data).hexdigest() == SAMPLE_SHA256


def test_sample_file_parses_whole_with_its_first_last_and_totals(tmp_path: Path) -> None:
    path = tmp_path / "sample_day.slg_v2"
    path.write_bytes(sample_bytes())
    with path.open("rb") as stream:
        reader, records = read(stream)

    assert reader.ok and reader.complete and reader.finished
    assert reader.problems == [] and reader.problem_count == 0
    assert reader.header == Header(sender="EGAC00123", file_date=date(2026, 3, 10), sequence=1)
    assert reader.records == reader.valid == len(records) == 192
    first, last = records[0], records[-1]
    assert first == Record(
        line=2,
        cpe=CPE,
        start=utc(2026, 3, 10, 0, 0),
        end=utc(2026, 3, 10, 0, 15),
        centi_kwh=107,
        estimated=False,
    )
    assert first.kwh == pytest.approx(1.07)
    assert last == Record(
        line=193,
        cpe=OTHER,
        start=utc(2026, 3, 10, 23, 45),
        end=utc(2026, 3, 11, 0, 0),
        centi_kwh=35,
        estimated=False,
    )
    assert sum(r.centi_kwh for r in records) == 24085
    assert sum(r.centi_kwh for r in records if r.cpe == CPE) == 18012
    assert sum(r.centi_kwh for r in records if r.cpe == OTHER) == 6073
    assert {r.cpe for r in records} == {CPE, OTHER}
    assert all(r.end - r.start == INTERVAL and r.start.tzinfo is UTC for r in records)
    assert [r.line for r in records] == list(range(2, 194))


def test_sample_reads_the_same_from_bytes_a_stream_and_chunks_of_any_size() -> None:
    data = sample_bytes()
    _, whole = read(data)
    for source in (
        io.BytesIO(data),
        [data],
        (data[i : i + 7] for i in range(0, len(data), 7)),
        [bytearray(data)],
    ):
        reader, records = read(source)
        assert reader.ok and records == whole


def test_the_time_zone_is_a_parameter() -> None:
    _, records = read(sample_bytes(), tz=NEW_YORK)
    assert records[0].start == utc(2026, 3, 10, 4, 0)  # New York is on EDT (UTC-4) from 8 March 2026


def test_lf_crlf_mixed_line_ends_and_trimmed_padding_read_alike() -> None:
    data = sample_bytes()
    _, expected = read(data)
    lines = data.split(b"\n")[:-1]
    crlf = b"".join(line + b"\r\n" for line in lines)
    trimmed = b"".join(line.rstrip(b" ") + b"\n" for line in lines)
    mixed = b"".join(line.rstrip(b" ") + (b"\r\n" if i % 2 else b"\n") for i, line in enumerate(lines))
    no_final_newline = crlf[:-2]
    for variant in (crlf, trimmed, mixed, no_final_newline):
        reader, records = read(variant)
        assert reader.ok, reader.problems
        assert records == expected


def test_writer_reproduces_the_sample_byte_for_byte() -> None:
    data = sample_bytes()
    reader, records = read(data)
    assert reader.header is not None
    again = b"".join(
        write_slg(
            ((r.cpe, r.start, r.centi_kwh, r.estimated) for r in records),
            tz=LISBON,
            sender=reader.header.sender,
            file_date=reader.header.file_date,
            sequence=reader.header.sequence,
            newline=b"\n",
        )
    )
    assert again == data


def test_records_in_any_order_and_a_cpe_day_split_across_the_file_are_fine() -> None:
    data = sample_bytes()
    lines = data.split(b"\n")[:-1]
    shuffled = [lines[0], *lines[1:-1][::-1][::2], *lines[1:-1][::-1][1::2], lines[-1]]
    reader, records = read(join(*shuffled, newline=b"\n"))
    assert reader.ok
    _, expected = read(data)
    assert sorted((r.cpe, r.start, r.centi_kwh) for r in records) == sorted(
        (r.cpe, r.start, r.centi_kwh) for r in expected
    )


def test_is_slg_name_accepts_both_spellings() -> None:
    assert is_slg_name("a.slg_v2") and is_slg_name("B.SGL_V2") and not is_slg_name("a.slg")


# Structural errors -----------------------------------------------------------------------------------


def test_empty_file_is_one_problem() -> None:
    for data in (b"", b"\r\n\n   \n", BOM):
        reader, records = read(data)
        assert records == [] and not reader.complete and not reader.ok
        assert [str(p) for p in reader.problems] == ["the file is empty: no header, no records, no trailer"]


def test_file_without_header_is_incomplete_but_its_valid_records_are_read() -> None:
    reader, records = read(join(detail("0015"), detail("0030"), trailer(2)))
    assert where(reader) == [(1, "record_type")]
    assert "must start with a header (00) record, not a detail (20) record" in reader.problems[0].message
    assert len(records) == 2 and reader.records == 2 and not reader.complete


def test_header_not_first_and_second_header() -> None:
    reader, _ = read(join(detail("0015"), header(), trailer(1)))
    assert where(reader) == [(1, "record_type"), (2, "record_type")]
    assert reader.problems[1].message == "a header (00) record after line 1; the header must come first"

    reader, _ = read(join(header(), detail("0015"), header(), trailer(1)))
    assert where(reader) == [(3, "record_type")]
    assert reader.problems[0].message == "a second header (00) record; the header is line 1"
    assert not reader.complete


def test_missing_trailer_names_the_last_line() -> None:
    reader, records = read(join(header(), detail("0015"), detail("0030")))
    assert len(records) == 2 and not reader.complete
    assert [str(p) for p in reader.problems] == [
        "line 3: the file ends without a trailer (99) record (a transfer cut short looks like this)"
    ]


def test_trailer_count_mismatch() -> None:
    reader, _ = read(join(header(), detail("0015"), detail("0030"), trailer(3)))
    assert [str(p) for p in reader.problems] == [
        'line 4, field "count": the trailer counts 3 detail records but the file has 2'
    ]
    assert not reader.complete and reader.records == 2


def test_anything_after_the_trailer_but_trailing_blank_lines() -> None:
    reader, records = read(join(header(), detail("0015"), trailer(1), detail("0030"), header(), b"x"))
    assert len(records) == 1 and not reader.complete
    assert where(reader) == [(4, None)]
    assert "content after the trailer (99) record at line 3" in reader.problems[0].message

    reader, _ = read(join(header(), detail("0015"), trailer(1), b"", b"   ", b""))
    assert reader.ok


def test_unknown_record_type_is_structural() -> None:
    reader, _ = read(join(header(), b"30" + detail()[2:], detail("0030"), trailer(1)))
    assert [str(p) for p in reader.problems] == [
        'line 2, field "record_type": 30 is not a record type (00, 20 or 99)'
    ]
    assert not reader.complete


def test_truncated_transfer_is_incomplete() -> None:
    data = slg(*(detail(t) for t in labels(range(0, 600, 15))))  # 42 lines of 102 bytes
    reader, records = read(data[: 21 * 102])
    assert [r.line for r in records] == list(range(2, 22)) and not reader.complete
    assert [str(p) for p in reader.problems] == [
        "line 21: the file ends without a trailer (99) record (a transfer cut short looks like this)"
    ]
    reader, records = read(data[: 21 * 102 + 30])
    assert len(records) == 20 and [str(p) for p in reader.problems] == [
        'line 22, field "time": the detail record is 30 characters long and ends inside time (positions 31-34)',
        "line 22: the file ends without a trailer (99) record (a transfer cut short looks like this)",
    ]


def test_blank_lines_inside_the_file_are_problems_each() -> None:
    reader, records = read(join(header(), detail("0015"), b"", b"  ", detail("0030"), trailer(2)))
    assert len(records) == 2 and reader.complete and not reader.ok
    assert [str(p) for p in reader.problems] == [
        "line 3: blank line inside the file",
        "line 4: blank line inside the file",
    ]


def test_utf8_bom_is_skipped_and_noted() -> None:
    reader, records = read(BOM + sample_bytes())
    assert reader.ok and reader.had_bom and len(records) == 192
    reader, _ = read(join(header(), BOM + detail(), trailer(0)))
    assert where(reader) == [(2, "record_type")] and not reader.had_bom


def test_cr_only_line_ends_are_rejected_with_one_clear_problem() -> None:
    data = sample_bytes().replace(b"\n", b"\r")
    reader, records = read(data)
    assert records == [] and not reader.ok
    assert [str(p) for p in reader.problems] == [
        "line 1: a carriage return (CR) inside the line: lines end in LF or CRLF, CR-only line ends are not accepted",
        "line 1: the file ends without a trailer (99) record (a transfer cut short looks like this)",
    ]


def test_a_line_that_never_ends_is_reported_without_being_held() -> None:
    megabytes = 8
    chunks = itertools.chain([header() + b"\n", b"20"], itertools.repeat(b"7" * 65536, megabytes * 16))
    tracemalloc.start()
    try:
        reader, records = read(chunks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert records == [] and not reader.ok
    assert (
        str(reader.problems[0])
        == f"line 2: the record is {2 + megabytes * 2**20} characters long; at most 100"
    )
    assert peak < 1_000_000


# Field errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        (detail(day="20260230"), "date", "20260230 is not a valid date (YYYYMMDD)"),
        (detail(day="2026102x"), "date", "2026102x is not a date (YYYYMMDD)"),
        (detail(day="18991231"), "date", "18991231 is outside the years 1900-2999"),
        (detail("2460"), "time", "2460 is not a valid HHMM time"),
        (detail("2415"), "time", "2415 is not a valid HHMM time"),
        (detail("0010"), "time", "0010 is not the end of a 15-minute interval (minutes 00, 15, 30 or 45)"),
        (detail("12:3"), "time", "'12:3' is not an HHMM time"),
        (
            detail("0000"),
            "time",
            "0000 is not an interval end: the interval that ends at midnight is labelled 2400 on the date it belongs to",
        ),
        (detail(energy="00000x1234"), "energy", "00000x1234 is not 10 digits (hundredths of kWh)"),
        (detail(energy="-000001234"), "energy", "'-000001234' is not 10 digits (hundredths of kWh)"),
        (detail(kind="X"), "reading_type", "X is not a reading type (R real, E estimated)"),
        (detail(kind=" "), "reading_type", "' ' is not a reading type (R real, E estimated)"),
        (
            detail(cpe="pt0002000012345678ab"),
            "cpe",
            "'pt0002000012345678ab' is not a CPE (up to 20 capital letters and digits)",
        ),
        (
            detail(cpe="PT00 2000012345678AB"),
            "cpe",
            "'PT00 2000012345678AB' is not a CPE (up to 20 capital letters and digits)",
        ),
        (detail(cpe=" PT0002000012345678A"), "cpe", "' PT0002000012345678A' is not left-aligned"),
        (detail(cpe=""), "cpe", "the CPE is empty"),
        (
            detail()[:60] + b"x" + detail()[61:],
            "padding",
            "position 61 holds 'x'; positions 46-100 must be spaces",
        ),
        (detail()[:45] + b"\t", "padding", "position 46 holds '\\t'; positions 46-100 must be spaces"),
        (detail() + b" ", None, "the record is 101 characters long; at most 100"),
        (
            detail()[:40],
            "energy",
            "the detail record is 40 characters long and ends inside energy (positions 35-44)",
        ),
        (
            detail()[:44],
            "reading_type",
            "the detail record is 44 characters long and ends inside reading_type (positions 45-45)",
        ),
        (
            detail()[:50] + b"\r" + detail()[51:],
            None,
            "a carriage return (CR) inside the line: lines end in LF or CRLF, CR-only line ends are not accepted",
        ),
    ],
)
def test_detail_field_errors_name_line_and_field(line: bytes, field: str | None, message: str) -> None:
    reader, records = read(slg(detail("0015"), line, detail("0045")))
    assert [r.line for r in records] == [2, 4]
    assert reader.problems == [Problem(3, field, message)]
    assert reader.complete and not reader.ok and reader.records == 3 and reader.valid == 2


def test_problem_and_error_read_like_a_location() -> None:
    reader, _ = read(slg(detail("0015"), detail("2460")))
    problem = reader.problems[0]
    assert str(problem) == 'line 3, field "time": 2460 is not a valid HHMM time'
    assert problem.as_dict() == {"line": 3, "field": "time", "message": "2460 is not a valid HHMM time"}
    error = SlgError("2460 is not a valid HHMM time", line=17, field="time")
    assert str(error) == 'line 17, field "time": 2460 is not a valid HHMM time'
    assert (error.line, error.field, error.message) == (17, "time", "2460 is not a valid HHMM time")
    assert str(SlgError("no place")) == "no place"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)  # Celery may carry it across processes


def test_every_bad_field_of_a_line_is_reported() -> None:
    reader, _ = read(slg(detail("2460", day="20261332", energy="x" * 10, kind="Q")))
    assert where(reader) == [(2, "date"), (2, "time"), (2, "energy"), (2, "reading_type")]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        (header(sender=""), "sender", "the sender code is empty"),
        (b"00 EGAC00123" + header()[12:], "sender", "' EGAC00123' is not left-aligned"),
        (header(sender="EG\x07AC"), "sender", "'EG\\x07AC' holds a control character"),
        (header(day="20261399"), "file_date", "20261399 is not a valid date (YYYYMMDD)"),
        (header(sequence="00a1"), "sequence", "00a1 is not a 4-digit sequence number"),
        (
            header()[:18],
            "file_date",
            "the header record is 18 characters long and ends inside file_date (positions 13-20)",
        ),
        (header() + b"  ", None, "the record is 102 characters long; at most 100"),
        (header()[:30] + b"#", "padding", "position 31 holds '#'; positions 25-100 must be spaces"),
    ],
)
def test_header_field_errors(line: bytes, field: str | None, message: str) -> None:
    reader, records = read(join(line, detail(), trailer(1)))
    assert reader.problems == [Problem(1, field, message)]
    assert len(records) == 1 and not reader.complete


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        (b"99TOTALS    00000001", "total_label", "'TOTALS    ' is not 'TOTAL' left-aligned"),
        (trailer("0000001x"), "count", "0000001x is not an 8-digit count"),
        (
            trailer(1)[:15],
            "count",
            "the trailer record is 15 characters long and ends inside count (positions 13-20)",
        ),
    ],
)
def test_trailer_field_errors(line: bytes, field: str, message: str) -> None:
    reader, _ = read(join(header(), detail(), line))
    assert reader.problems == [Problem(3, field, message)]
    assert not reader.complete


def test_max_problems_keeps_the_first_and_counts_all() -> None:
    bad = [detail(t, energy="bad_energy") for t in labels(range(0, 1440, 15))]
    reader, records = read(slg(*bad), max_problems=10)
    assert records == [] and reader.problem_count == 96 and len(reader.problems) == 10
    assert [p.line for p in reader.problems] == list(range(2, 12))
    reader, _ = read(slg(*bad), max_problems=0)
    assert reader.problems == [] and reader.problem_count == 96 and not reader.ok


def test_raise_for_problems() -> None:
    reader, _ = read(sample_bytes())
    reader.raise_for_problems()  # ok: nothing raised

    reader, _ = read(join(header(), detail("2460"), detail("0030")))
    with pytest.raises(SlgRejected) as caught:
        reader.raise_for_problems()
    assert caught.value.problem_count == 2 and not caught.value.complete
    assert str(caught.value) == (
        'file rejected: incomplete (header or trailer wrong or missing), 2 problems; first: line 2, field "time": '
        "2460 is not a valid HHMM time"
    )
    assert isinstance(caught.value, SlgError)

    unread = SlgReader(sample_bytes(), tz=LISBON)
    with pytest.raises(SlgError, match="has not been read to its end"):
        unread.raise_for_problems()
    assert not unread.complete and not unread.ok


def test_reader_misuse_raises_slg_error_only() -> None:
    # Each call passes what the annotations refuse, on purpose: the reader's own checks are tested.
    with pytest.raises(SlgError, match=r"tz must be a zoneinfo\.ZoneInfo"):
        SlgReader(b"", tz=UTC)  # type: ignore[arg-type]
    with pytest.raises(SlgError, match="binary mode"):
        SlgReader("00EGAC", tz=LISBON)  # type: ignore[arg-type]
    with pytest.raises(SlgError, match="binary mode"):
        list(SlgReader(io.StringIO("00EGAC"), tz=LISBON))  # type: ignore[arg-type]
    with pytest.raises(SlgError, match="yields int"):
        list(SlgReader(iter([1, 2]), tz=LISBON))  # type: ignore[arg-type]
    with pytest.raises(SlgError, match="max_problems"):
        SlgReader(b"", tz=LISBON, max_problems=-1)
    reader = SlgReader(b"", tz=LISBON)
    list(reader)
    with pytest.raises(SlgError, match="reads its stream once"):
        iter(reader)


def test_a_failing_stream_raises_slg_read_error_with_its_cause() -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError("connection reset")

    with pytest.raises(SlgReadError, match="connection reset") as caught:
        list(SlgReader(Broken(), tz=LISBON))
    assert isinstance(caught.value.__cause__, OSError)
    assert isinstance(caught.value, OSError)  # I/O handlers retry it like any other I/O failure

    def cut() -> Iterator[bytes]:
        yield header() + b"\n"
        raise OSError("gone")

    with pytest.raises(SlgReadError):
        list(SlgReader(cut(), tz=LISBON))


# Time: 2400, both clock changes, in more than one zone -------------------------------------------------


def test_2400_is_the_last_interval_of_its_date() -> None:
    reader, records = read(slg(detail("2400", day="20260310"), detail("0015", day="20260311")))
    assert reader.ok
    assert (records[0].start, records[0].end) == (utc(2026, 3, 10, 23, 45), utc(2026, 3, 11, 0, 0))
    assert records[1].start == records[0].end


def test_lisbon_fall_back_day_has_100_intervals_the_repeated_hour_in_file_order() -> None:
    minutes = [*range(0, 120, 15), *range(60, 120, 15), *range(120, 1440, 15)]
    file_labels = labels(minutes)
    assert file_labels[:12] == [
        "0015",
        "0030",
        "0045",
        "0100",
        "0115",
        "0130",
        "0145",
        "0200",
        "0115",
        "0130",
        "0145",
        "0200",
    ]
    reader, records = read(slg(*(detail(t) for t in file_labels)))
    assert reader.ok and len(records) == 100
    # Midnight of 25 October 2026 is still summer time (UTC+1); the clocks go back at 02:00 local.
    assert [r.start for r in records] == [utc(2026, 10, 24, 23, 0) + INTERVAL * i for i in range(100)]
    assert all(r.end - r.start == INTERVAL for r in records)
    first_0115, second_0115 = records[4], records[8]
    assert (first_0115.line, first_0115.start) == (6, utc(2026, 10, 25, 0, 0))
    assert (second_0115.line, second_0115.start) == (10, utc(2026, 10, 25, 1, 0))
    assert records[-1].end == utc(2026, 10, 26, 0, 0)


def test_repeated_hour_passes_may_interleave_and_a_third_occurrence_is_an_error() -> None:
    reader, records = read(slg(detail("0115"), detail("0115"), detail("0130"), detail("0115")))
    assert [r.start for r in records] == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 0, 15),
    ]
    assert [str(p) for p in reader.problems] == [
        f'line 5, field "time": {CPE} 2026-10-25 0115 appears a third time; an interval in the hour the clocks '
        "go back over appears at most twice"
    ]


def test_an_exact_duplicate_interval_is_an_error_even_far_apart() -> None:
    lines = [
        detail("0015"),
        detail("0030", cpe=OTHER),
        detail("0030"),
        detail("0015", cpe=OTHER),
        detail("0015"),
    ]
    reader, records = read(slg(*lines))
    assert len(records) == 4 and reader.complete and not reader.ok
    assert [str(p) for p in reader.problems] == [
        f'line 6, field "time": {CPE} 2026-10-25 0015 is a duplicate: the file has this interval already'
    ]
    # The same label on another day, or for another CPE, is another interval.
    reader, _ = read(slg(detail("0015"), detail("0015", day="20261026"), detail("0015", cpe=OTHER)))
    assert reader.ok


def test_lisbon_spring_forward_day_has_92_intervals_and_the_skipped_hour_is_an_error() -> None:
    minutes = [*range(0, 60, 15), *range(120, 1440, 15)]
    reader, records = read(slg(*(detail(t, day="20260329") for t in labels(minutes))))
    assert reader.ok and len(records) == 92
    assert [r.start for r in records] == [utc(2026, 3, 29, 0, 0) + INTERVAL * i for i in range(92)]
    assert records[3].end == records[4].start == utc(2026, 3, 29, 1, 0)  # "0100" then "0215"

    reader, records = read(slg(*(detail(t, day="20260329") for t in ["0100", "0115", "0200", "0215"])))
    assert [r.start for r in records] == [utc(2026, 3, 29, 0, 45), utc(2026, 3, 29, 1, 0)]
    assert [str(p) for p in reader.problems] == [
        'line 3, field "time": 2026-03-29 0115 would start at 01:00, a local time that does not exist in '
        "Europe/Lisbon (the clocks go forward over it)",
        'line 4, field "time": 2026-03-29 0200 would start at 01:45, a local time that does not exist in '
        "Europe/Lisbon (the clocks go forward over it)",
    ]


def test_new_york_changes_at_two_not_one() -> None:
    fall = labels([*range(0, 120, 15), *range(60, 120, 15), *range(120, 1440, 15)])
    reader, records = read(slg(*(detail(t, day="20261101") for t in fall)), tz=NEW_YORK)
    assert reader.ok and len(records) == 100
    assert [r.start for r in records] == [utc(2026, 11, 1, 4, 0) + INTERVAL * i for i in range(100)]
    assert (records[4].start, records[8].start) == (utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 6, 0))

    spring = labels([*range(0, 120, 15), *range(180, 1440, 15)])
    reader, records = read(slg(*(detail(t, day="20260308") for t in spring)), tz=NEW_YORK)
    assert reader.ok and len(records) == 92
    assert [r.start for r in records] == [utc(2026, 3, 8, 5, 0) + INTERVAL * i for i in range(92)]

    # Lisbon's skipped labels are New York's ordinary ones and the other way round.
    lisbon_gap = slg(*(detail(t, day="20260329") for t in ["0115", "0130", "0145", "0200"]))
    assert read(lisbon_gap, tz=NEW_YORK)[0].ok and not read(lisbon_gap, tz=LISBON)[0].ok
    new_york_gap = slg(*(detail(t, day="20260308") for t in ["0215", "0230", "0245", "0300"]))
    assert read(new_york_gap, tz=LISBON)[0].ok
    reader, _ = read(new_york_gap, tz=NEW_YORK)
    assert [p.line for p in reader.problems] == [2, 3, 4, 5]


def test_a_change_at_midnight_repeats_2400() -> None:
    # Santiago goes back from 24:00 to 23:00 on 4 April 2026 and forward from 00:00 to 01:00 on 6 September.
    fall = labels([*range(0, 1440, 15), *range(1380, 1440, 15)])
    assert fall[-8:] == ["2315", "2330", "2345", "2400"] * 2
    reader, records = read(slg(*(detail(t, day="20260404") for t in fall)), tz=SANTIAGO)
    assert reader.ok and len(records) == 100
    assert [r.start for r in records] == [utc(2026, 4, 4, 3, 0) + INTERVAL * i for i in range(100)]

    reader, records = read(slg(*(detail(t, day="20260906") for t in labels(range(0, 1440, 15)))), tz=SANTIAGO)
    assert len(records) == 92 and [p.line for p in reader.problems] == [2, 3, 4, 5]


def test_writer_labels_both_change_days_in_every_zone() -> None:
    cases = [
        (LISBON, date(2026, 10, 25), 100),
        (LISBON, date(2026, 3, 29), 92),
        (NEW_YORK, date(2026, 11, 1), 100),
        (NEW_YORK, date(2026, 3, 8), 92),
        (SANTIAGO, date(2026, 4, 4), 100),
        (SANTIAGO, date(2026, 9, 6), 92),
        (LORD_HOWE, date(2026, 4, 5), 98),
        (LORD_HOWE, date(2026, 10, 4), 94),
    ]
    for tz, day, count in cases:
        starts = local_day(tz, day)
        assert len(starts) == count
        data = written(((CPE, s, i, i % 3 == 0) for i, s in enumerate(starts)), tz=tz, newline=b"\n")
        lines = data.split(b"\n")[1:-2]
        assert {line[22:30] for line in lines} == {f"{day:%Y%m%d}".encode()}
        assert lines[-1][30:34] == b"2400"
        reader, records = read(data, tz=tz)
        assert reader.ok, (tz, day, reader.problems)
        assert [(r.cpe, r.start, r.centi_kwh, r.estimated) for r in records] == [
            (CPE, s, i, i % 3 == 0) for i, s in enumerate(starts)
        ]


# The writer --------------------------------------------------------------------------------------------


def test_writer_layout_padded_and_not() -> None:
    start = utc(2026, 3, 10, 0, 0)
    padded = list(
        write_slg([(CPE, start, 107, False)], tz=LISBON, sender="EGAC00123", file_date=date(2026, 3, 10))
    )
    assert padded == [
        b"00EGAC00123 202603100001".ljust(100) + b"\r\n",
        b"20PT0002000012345678AB2026031000150000000107R".ljust(100) + b"\r\n",
        b"99TOTAL     00000001".ljust(100) + b"\r\n",
    ]
    bare = list(
        write_slg(
            [("PT1", start, 5, True)],
            tz=LISBON,
            file_date=date(2026, 3, 10),
            sequence=42,
            newline=b"\n",
            pad=False,
        )
    )
    assert bare == [
        b"00ENERGYDASH202603100042\n",
        b"20PT1                 2026031000150000000005E\n",
        b"99TOTAL     00000001\n",
    ]


@pytest.mark.parametrize(
    ("records", "field", "message"),
    [
        ([(CPE, utc(2026, 3, 10, 0, 0), 1, False)] * 2, "time", "is a duplicate interval"),
        (
            [(CPE, utc(2026, 10, 25, 1, 0), 1, False)],
            "time",
            "later pass over the repeated hour comes before",
        ),
        ([(CPE, utc(2026, 3, 10, 0, 5), 1, False)], "time", "is not on a local quarter hour"),
        ([(CPE, datetime(2026, 3, 10), 1, False)], "time", "is not an aware datetime"),
        ([("pt1", utc(2026, 3, 10), 1, False)], "cpe", "is not a CPE"),
        ([(CPE, utc(2026, 3, 10), 10**10, False)], "energy", "is not 0-9999999999"),
        ([(CPE, utc(2026, 3, 10), -1, False)], "energy", "is not 0-9999999999"),
        ([(CPE, utc(2026, 3, 10), 1, "R")], "reading_type", "must be a bool"),
        ([(CPE, utc(3000, 3, 10), 1, False)], "date", "is outside the years"),
    ],
)
def test_writer_refuses_what_would_not_read_back(records: list[Any], field: str, message: str) -> None:
    with pytest.raises(SlgError, match=message) as caught:
        written(records)
    assert caught.value.field == field and caught.value.line == len(records) + 1


def test_writer_argument_errors() -> None:
    for options in (
        {"sender": ""},
        {"sender": "ELEVENCHARS"},
        {"sender": " X"},
        {"sender": "X\x01"},
        {"sender": "\u20ac"},
        {"file_date": datetime(2026, 1, 1)},
        {"sequence": 10_000},
        {"newline": b"\r"},
    ):
        with pytest.raises(SlgError):
            written([], **options)
    with pytest.raises(SlgError, match="tz must be"):
        written([], tz=UTC)  # type: ignore[arg-type]  # a timezone.utc, not a ZoneInfo, on purpose


# Memory -------------------------------------------------------------------------------------------------


def test_a_million_lines_stream_in_bounded_memory(tmp_path: Path) -> None:
    """1,000,000 detail lines (1,038 CPEs x 10 days, the fall-back day among them) in ~1 MB."""
    count = 1_000_000
    starts = [s for day in range(20, 30) for s in local_day(LISBON, date(2026, 10, day))]  # 964 intervals
    total = 0

    def records() -> Iterator[tuple[str, datetime, int, bool]]:
        nonlocal total
        for n in itertools.count():
            cpe = f"PT{n:016d}ZZ"
            for i, start in enumerate(starts):
                value = (n * 7 + i) % 100_000
                total += value
                yield cpe, start, value, i % 11 == 0

    path = tmp_path / "big.slg_v2"
    began, cpu = time.monotonic(), time.process_time()
    with path.open("wb") as out:
        out.writelines(write_slg(itertools.islice(records(), count), tz=LISBON, file_date=date(2026, 10, 31)))
    assert path.stat().st_size == (count + 2) * 102

    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            reader = SlgReader(stream, tz=LISBON)
            # sum() adds in C without an int object per record: a Python counter here would add
            # two traced allocations a line, as much again as the reader's own time under tracing.
            centi = sum(record.centi_kwh for record in reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed, cpu = time.monotonic() - began, time.process_time() - cpu

    assert reader.ok, reader.problems[:3]
    assert reader.records == reader.valid == count
    assert centi == total
    # The file is 102 MB; what stays is one small int per CPE-day (10,380 of them) and the caches.
    assert peak < 4_000_000, f"peak {peak:,} bytes"
    print(
        f"1,000,000 lines written and read: {elapsed:.1f} s ({cpu:.1f} s CPU); tracemalloc peak {peak:,} bytes"
    )


# Properties ----------------------------------------------------------------------------------------------

ZONES = (LISBON, NEW_YORK, SANTIAGO, LORD_HOWE)


def _changes(tz: ZoneInfo) -> list[datetime]:
    """The UTC instants of the zone's clock changes in 2026."""
    found, at = [], utc(2026, 1, 1)
    offset = at.astimezone(tz).utcoffset()
    while at.year == 2026:
        at += INTERVAL
        if at.astimezone(tz).utcoffset() != offset:
            found.append(at)
            offset = at.astimezone(tz).utcoffset()
    return found


CHANGES = {tz.key: _changes(tz) for tz in ZONES}
cpes = st.from_regex(r"[A-Z0-9]{1,20}", fullmatch=True)


@st.composite
def record_lists(draw: st.DrawFn) -> tuple[ZoneInfo, list[tuple[str, datetime, int, bool]]]:
    """Records a file can hold, in an order it can hold them, around the zone's clock changes."""
    tz = draw(st.sampled_from(ZONES))
    codes = draw(st.lists(cpes, min_size=1, max_size=3, unique=True))
    anchors = CHANGES[tz.key]
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(codes), st.sampled_from(anchors), st.integers(-110, 110)),
            max_size=40,
            unique=True,
        )
    )
    items = [
        (cpe, anchor + INTERVAL * k, draw(st.integers(0, 9_999_999_999)), draw(st.booleans()))
        for cpe, anchor, k in keys
    ]
    items = draw(st.permutations(items))
    # A file says which pass over a repeated hour an interval is by order alone: the earlier
    # instant comes first, and the later one cannot come without it. Sort each such pair in place,
    # and make a later instant without its twin the earlier one.
    groups: dict[tuple[str, datetime], list[int]] = {}
    for position, (cpe, start, _, _) in enumerate(items):
        groups.setdefault((cpe, start.astimezone(tz).replace(tzinfo=None)), []).append(position)
    for (_, wall), positions in groups.items():
        if len(positions) == 1:
            cpe, _, value, estimated = items[positions[0]]
            items[positions[0]] = (cpe, wall.replace(tzinfo=tz, fold=0).astimezone(UTC), value, estimated)
        ordered = sorted((items[p] for p in positions), key=lambda item: item[1])
        for p, item in zip(positions, ordered, strict=True):
            items[p] = item
    return tz, items


def chunked(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    at, i = 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        yield data[at : at + size]
        at, i = at + size, i + 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=record_lists(),
    newline=st.sampled_from([b"\n", b"\r\n"]),
    pad=st.booleans(),
    sizes=st.lists(st.integers(1, 300), max_size=5),
)
def test_round_trip_through_writer_and_reader(
    case: tuple[ZoneInfo, list[tuple[str, datetime, int, bool]]], newline: bytes, pad: bool, sizes: list[int]
) -> None:
    tz, items = case
    data = written(items, tz=tz, newline=newline, pad=pad, sender="X Y", sequence=7)
    reader, records = read(chunked(data, sizes), tz=tz)
    assert reader.ok, reader.problems
    assert reader.header == Header("X Y", date(2026, 10, 26), 7)
    assert [(r.cpe, r.start, r.centi_kwh, r.estimated) for r in records] == items
    assert all(r.end - r.start == INTERVAL and r.start.tzinfo is UTC for r in records)
    assert [r.line for r in records] == list(range(2, len(items) + 2))


def canonical(data: bytes) -> list[bytes]:
    """A file's lines as the reader sees them: no BOM, no line ends, no padding, no trailing blank lines."""
    data = data.removeprefix(BOM)
    lines = [line.removesuffix(b"\r").rstrip(b" ") for line in data.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


mutations = st.sampled_from(
    ["flip", "delete", "insert", "overwrite", "truncate", "duplicate_line", "delete_line"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=record_lists(), pad=st.booleans(), mutation=mutations, data=st.data())
def test_corrupted_files_raise_nothing_and_are_never_ok_when_they_changed(
    case: tuple[ZoneInfo, list[tuple[str, datetime, int, bool]]],
    pad: bool,
    mutation: str,
    data: st.DataObject,
) -> None:
    tz, items = case
    original = written(items, tz=tz, pad=pad)
    position = data.draw(st.integers(0, len(original) - 1))
    lines = original.split(b"\r\n")[:-1]
    line_index = data.draw(st.integers(0, len(lines) - 1))
    if mutation == "flip":
        corrupt = bytearray(original)
        corrupt[position] ^= data.draw(st.integers(1, 255))
        blob = bytes(corrupt)
    elif mutation == "delete":
        blob = original[:position] + original[position + data.draw(st.integers(1, 3)) :]
    elif mutation == "insert":
        blob = original[:position] + data.draw(st.binary(min_size=1, max_size=3)) + original[position:]
    elif mutation == "overwrite":
        noise = data.draw(st.binary(min_size=1, max_size=20))
        blob = original[:position] + noise + original[position + len(noise) :]
    elif mutation == "truncate":
        # Cut anywhere before the end of the trailer's count: what is cut off is never only padding.
        end_of_count = original.rindex(b"99TOTAL") + 20
        blob = original[: data.draw(st.integers(0, end_of_count - 1))]
    elif mutation == "duplicate_line":
        blob = b"".join(line + b"\r\n" for line in [*lines[: line_index + 1], *lines[line_index:]])
    else:
        blob = b"".join(line + b"\r\n" for i, line in enumerate(lines) if i != line_index)

    sizes = data.draw(st.lists(st.integers(1, 200), max_size=4))
    outcomes = []
    for source in (blob, chunked(blob, sizes)):
        reader = SlgReader(source, tz=tz)
        try:
            records = list(reader)
        except SlgError:
            records = None
            assert not reader.ok
        outcomes.append(
            (records, reader.problems, reader.problem_count, reader.ok, reader.complete, reader.records)
        )
    assert outcomes[0] == outcomes[1]  # however the bytes arrive

    assert reader.problem_count >= len(reader.problems)
    if mutation in ("truncate", "duplicate_line", "delete_line"):
        assert not reader.ok
    if reader.ok:
        # Accepted: the file must be a valid file in its own right, exactly what its records say.
        assert (
            reader.header is not None
            and records is not None
            and reader.valid == reader.records == len(records)
        )
        again = written(
            [(r.cpe, r.start, r.centi_kwh, r.estimated) for r in records],
            tz=tz,
            sender=reader.header.sender,
            file_date=reader.header.file_date,
            sequence=reader.header.sequence,
        )
        assert canonical(blob) == canonical(again)


def test_a_file_in_cpe_order_works_out_each_dates_instants_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # 100 days for each of three CPEs, one CPE after the other: each date's 97 instants are
    # computed for the first CPE and shared by the others (a cache of 64 dates recomputed them).
    calls: list[object] = []
    spans = slg_module._spans

    def counted(*args: Any) -> Any:
        calls.append(args)
        return spans(*args)

    monkeypatch.setattr(slg_module, "_spans", counted)
    first = datetime(2026, 3, 1, tzinfo=UTC)
    records = [
        (f"PT00020000000000{n:02d}AB", first + timedelta(minutes=15 * q), 100, False)
        for n in range(3)
        for q in range(96 * 100)
    ]
    data = b"".join(write_slg(records, tz=LISBON, file_date=first.date()))
    read = list(SlgReader(io.BytesIO(data), tz=LISBON))
    assert len(read) == len(records)
    assert len(calls) == len({start.astimezone(LISBON).date() for _, start, _, _ in records})
    assert read[5].start is read[96 * 100 + 5].start  # shared, not equal copies
