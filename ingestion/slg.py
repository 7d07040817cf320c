"""SLG v2 meter files: a streaming reader and a writer (pure: no Django, no database, no settings).

The rules are those of the shared format document; `docs/formats/slg_v2.md` describes what this
module does with each of them, every problem it reports and how to call it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, BinaryIO, NamedTuple
from zoneinfo import ZoneInfo

__all__ = [
    "INTERVAL",
    "RECORD_LENGTH",
    "SUFFIXES",
    "Header",
    "Problem",
    "Record",
    "SlgError",
    "SlgReadError",
    "SlgReader",
    "SlgRejected",
    "is_slg_name",
    "write_slg",
]

RECORD_LENGTH = 100
INTERVAL = timedelta(minutes=15)
SUFFIXES = (".slg_v2", ".sgl_v2")  # some producers misspell the extension; both are the same format

_SLOTS = 96  # 15-minute intervals in a day without a clock change
_MIN_YEAR, _MAX_YEAR = 1900, 2999  # keeps every local date convertible to UTC and back
_CHUNK = 64 * 1024
_KEEP = 1024  # of a line that never ends, only this much is kept: enough to name it, not to hold it
_BOM = b"\xef\xbb\xbf"
_CR = 13
_R, _E = ord("R"), ord("E")
_TYPES = (_R, _E)

# An interval is a slot of its local date: slot s starts at s * 15 minutes past local midnight and
# is labelled with its end, so slot 0 is "0015" and slot 95 is "2400".
_SLOT_LABEL = tuple(f"{(s + 1) * 15 // 60:02d}{(s + 1) * 15 % 60:02d}" for s in range(_SLOTS))
_LABEL_SLOT = {label.encode(): s for s, label in enumerate(_SLOT_LABEL)}
_NEXT_LABEL = (*(label.encode() for label in _SLOT_LABEL), b"\n")  # after 2400, a label no line holds
_SLOT_DELTA = tuple(timedelta(minutes=15 * s) for s in range(_SLOTS))
_SLOT_BIT = tuple(1 << s for s in range(_SLOTS))
_FULL_DAY = (1 << _SLOTS) - 1
# The fast path keeps the current (CPE, date)'s bitmask as the text of a 192-bit binary number in a
# bytearray, so marking an interval allocates nothing: bit s is the character at _LAST_POS - s.
_MASK_FORMAT = "0192b"
_LAST_POS = 2 * _SLOTS - 1
_ZERO, _ONE = ord("0"), ord("1")
_NO_RUN = (b"\n", "", (), (), bytearray())  # no line holds an LF, so no line continues this run
# The state key of a (CPE, date) is cpe_index * _ORDINAL_SPAN + date.toordinal(): one small int.
_ORDINAL_SPAN = 1 << 22  # date(9999, 12, 31).toordinal() is 3,652,059 < 2**22

_NORMAL, _REPEATED, _SKIPPED = 0, 1, 2

_CPE_RE = re.compile(rb"[A-Z0-9]{1,20} *")
_CPE_STR_RE = re.compile(r"[A-Z0-9]{1,20}")
_CONTROL_RE = re.compile(rb"[\x00-\x1f\x7f-\x9f]")
_CONTROL_STR_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_HEADER_FIELDS = (("sender", 2, 12), ("file_date", 12, 20), ("sequence", 20, 24))
_DETAIL_FIELDS = (
    ("cpe", 2, 22),
    ("date", 22, 30),
    ("time", 30, 34),
    ("energy", 34, 44),
    ("reading_type", 44, 45),
)
_TRAILER_FIELDS = (("total_label", 2, 12), ("count", 12, 20))
_KIND_NAME = {b"00": "header (00)", b"20": "detail (20)", b"99": "trailer (99)"}


def _locate(line: int | None, field: str | None, message: str) -> str:
    """Render `line 17, field "time": message`, leaving out what is not known."""
    where = []
    if line is not None:
        where.append(f"line {line}")
    if field is not None:
        where.append(f'field "{field}"')
    return f"{', '.join(where)}: {message}" if where else message


def _show(raw: bytes) -> str:
    """A field's bytes for a message: plain when letters and digits, quoted (with escapes) otherwise."""
    text = raw.decode("latin-1")
    return text if text.isascii() and text.isalnum() else repr(text)


class SlgError(Exception):
    """The one exception type of this module: what is wrong, and where (line and field) when known."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.field = field

    def __str__(self) -> str:
        """`line 17, field "time": message`."""
        return _locate(self.line, self.field, self.message)


class SlgReadError(SlgError, OSError):
    """The stream could not be read (an OSError or a closed file; the cause is chained).

    Also an OSError, so that code which treats I/O failures as "try again later" treats it so.
    """


class SlgRejected(SlgError):
    """Raised by `SlgReader.raise_for_problems()`: the file is not acceptable as a whole."""

    def __init__(
        self,
        message: str,
        *,
        problems: list[Problem] | None = None,
        problem_count: int = 0,
        complete: bool = False,
    ) -> None:
        super().__init__(message)
        self.problems = list(problems or [])
        self.problem_count = problem_count
        self.complete = complete


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file, collected rather than raised."""

    line: int | None
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The problem as plain data (for JSON and the file ledger)."""
        return {"line": self.line, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        """`line 17, field "time": message`."""
        return _locate(self.line, self.field, self.message)


@dataclass(frozen=True, slots=True)
class Header:
    """The header record: who sent the file, its date and its sequence number."""

    sender: str
    file_date: date
    sequence: int


class Record(NamedTuple):
    """One 15-minute interval of one meter: energy in hundredths of kWh, instants in UTC.

    A named tuple, not a frozen dataclass: a file makes one per reading, and a frozen
    dataclass's __init__ sets each field through object.__setattr__ (a tenth of the import's
    Python time for 2 million readings).
    """

    line: int
    cpe: str
    start: datetime
    end: datetime
    centi_kwh: int
    estimated: bool

    @property
    def kwh(self) -> float:
        """The energy in kWh."""
        return self.centi_kwh / 100


def is_slg_name(name: str) -> bool:
    """Whether a file name has one of the SLG v2 extensions (`.slg_v2`, or the misspelt `.sgl_v2`)."""
    return name.lower().endswith(SUFFIXES)


# Time zone arithmetic ---------------------------------------------------------------------------


def _resolve(naive: datetime, tz: ZoneInfo) -> tuple[int, datetime | None, datetime | None]:
    """Classify a local wall time: (_NORMAL, utc, None), (_REPEATED, earlier, later) or (_SKIPPED, ...)."""
    first = naive.replace(tzinfo=tz).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return _NORMAL, first, None
    # The two folds disagree: either both instants show this wall time (the repeated hour) or
    # neither does (the skipped hour); converting back tells which, whatever the zone's rules.
    if all(u.astimezone(tz).replace(tzinfo=None) == naive for u in (first, second)):
        return _REPEATED, min(first, second), max(first, second)
    return _SKIPPED, None, None


def _day(tz: ZoneInfo, day: date) -> tuple[datetime | None, tuple[tuple[Any, ...], ...] | None]:
    """A local date's intervals: (utc_midnight, None) on an ordinary day, else (None, per-slot table)."""
    midnight = datetime(day.year, day.month, day.day)
    table = tuple(_resolve(midnight + _SLOT_DELTA[s], tz) for s in range(_SLOTS))
    base = table[0][1]
    # Checking every slot (rather than comparing the offsets at both midnights) keeps a day with
    # two clock changes, or a change that is not a whole hour, out of the fast arithmetic path.
    # (A skipped local midnight has no base, and is no ordinary day.)
    if base is not None and all(
        kind == _NORMAL and start == base + _SLOT_DELTA[s] for s, (kind, start, _) in enumerate(table)
    ):
        return base, None
    return None, table


# Dates whose spans a reader keeps: more than a year, so a file in CPE order (each CPE's days
# in turn) computes each date's spans once. With 64 a file of 104 days per CPE computed them
# again for every CPE: 7% of its import time, and every record's instants were new objects
# (so their hashes were computed again downstream).
_SPAN_DATES = 400


def _spans(
    base: datetime | None, table: tuple[tuple[Any, ...], ...] | None
) -> tuple[tuple[Any, ...], tuple[Any, ...], int]:
    """A date's interval (starts, ends) by slot for the fast path, and the slots it must leave alone.

    On an ordinary day the starts and ends are the same 97 datetimes, shared by every CPE. On a
    clock-change day the first pass over the repeated hour is there (the second needs the state,
    so `_detail` takes it) and the skipped slots are marked as taken, which sends them to `_detail`
    to be reported.
    """
    if table is None:
        assert base is not None  # _day gives an ordinary day its base
        bounds = tuple(base + INTERVAL * s for s in range(_SLOTS + 1))
        return bounds[:-1], bounds[1:], 0
    starts = tuple(start for _, start, _ in table)
    ends = tuple(None if start is None else start + INTERVAL for start in starts)
    taken = sum(_SLOT_BIT[s] for s, (kind, _, _) in enumerate(table) if kind == _SKIPPED)
    return starts, ends, taken


def _parse_date(raw: bytes) -> tuple[date | None, str | None]:
    """A `YYYYMMDD` field as a date, or why it is not one."""
    if len(raw) != 8 or not raw.isdigit():
        return None, f"{_show(raw)} is not a date (YYYYMMDD)"
    year = int(raw[:4])
    try:
        value = date(year, int(raw[4:6]), int(raw[6:]))
    except ValueError:
        return None, f"{_show(raw)} is not a valid date (YYYYMMDD)"
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return None, f"{_show(raw)} is outside the years {_MIN_YEAR}-{_MAX_YEAR}"
    return value, None


def _time_problem(raw: bytes) -> str:
    """Why a time field is not one of the labels 0015..2400."""
    if len(raw) != 4 or not raw.isdigit():
        return f"{_show(raw)} is not an HHMM time"
    hours, minutes = int(raw[:2]), int(raw[2:])
    if raw == b"0000":
        return (
            "0000 is not an interval end: the interval that ends at midnight is labelled 2400 "
            "on the date it belongs to"
        )
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        return f"{_show(raw)} is not a valid HHMM time"
    return f"{_show(raw)} is not the end of a 15-minute interval (minutes 00, 15, 30 or 45)"


def _clock(slot: int) -> str:
    """The local start time of a slot, as HH:MM."""
    return f"{slot * 15 // 60:02d}:{slot * 15 % 60:02d}"


# The reader ---------------------------------------------------------------------------------------


class SlgReader:
    """Stream an SLG v2 file: iterate for the valid detail records, then look at what was wrong.

    Problems are collected, not raised; after the iteration `complete` says whether the header and
    the trailer were right and `ok` whether nothing at all was wrong. Records are yielded as they
    are read, before the end of the file is known: keep them provisional until `ok` (or an
    operator's decision) says to keep them. `records` and `valid` are counted when the end is
    reached.
    """

    def __init__(
        self,
        stream: BinaryIO | Iterable[bytes] | bytes,
        *,
        tz: ZoneInfo,
        max_problems: int = 1000,
    ) -> None:
        if not isinstance(tz, ZoneInfo):
            raise SlgError(f"tz must be a zoneinfo.ZoneInfo, not {type(tz).__name__}")
        if isinstance(max_problems, bool) or not isinstance(max_problems, int) or max_problems < 0:
            raise SlgError(f"max_problems must be a whole number >= 0, not {max_problems!r}")
        if isinstance(stream, str):
            raise SlgError("the stream is text; open the file in binary mode ('rb') or pass bytes")
        self._stream = stream
        self.tz = tz
        self.max_problems = max_problems
        self.header: Header | None = None
        # records and valid are set when the iteration ends: counting each line would cost the
        # fast path an int allocation per line, so they are worked out from the line numbers.
        self.records = 0
        self.valid = 0
        self.problems: list[Problem] = []
        self.problem_count = 0
        self.had_bom = False
        self.finished = False
        self._started = False
        self._structure_ok = True
        self._header_ok = False
        self._trailer_ok = False
        self._header_line: int | None = None
        self._first_record: int | None = None
        self._trailer_line: int | None = None
        self._after_trailer = False
        self._blank_from: int | None = None
        self._blank_count = 0
        # Caches of what each distinct field value means; they hold only values that were valid.
        self._cpes: dict[bytes, tuple[int, str]] = {}
        self._dates: dict[bytes, tuple[int, datetime | None, tuple[tuple[Any, ...], ...] | None]] = {}
        # (CPE, local date) -> bitmask of the intervals seen: bit s for slot s, bit 96 + s for the
        # second pass over a repeated slot. One small int per CPE-day, whatever the file's order.
        self._state: dict[int, int] = {}
        # Interval starts and ends (UTC) of the dates the fast path met lately: see `_spans`.
        # Up to _SPAN_DATES of them (~11 KB each).
        self._spans: dict[int, tuple[tuple[Any, ...], tuple[Any, ...], int]] = {}
        # The fast path's current run: the CPE and date of the line before (the line's positions
        # 3-30), the CPE, its date's starts and ends, and the run's bitmask as text (see _MASK_FORMAT).
        self._run_key: int | None = None
        self._run: tuple[bytes, str, tuple[Any, ...], tuple[Any, ...], bytearray] = _NO_RUN
        self._body = False  # whether a detail line may take the fast path
        self._odd_lines = 0  # lines handled by `_line`, of every kind
        self._odd_details = 0  # detail lines among them
        self._odd_valid = 0  # records among them

    @property
    def complete(self) -> bool:
        """Whether the file was read to its end with one valid header first and one right trailer last."""
        return self.finished and self._structure_ok and self._header_ok and self._trailer_ok

    @property
    def ok(self) -> bool:
        """Whether the file is complete and nothing in it was wrong."""
        return self.complete and self.problem_count == 0

    def raise_for_problems(self) -> None:
        """Raise `SlgRejected` listing what is wrong unless the file was read to the end and is `ok`."""
        if not self.finished:
            raise SlgError("the file has not been read to its end; iterate the reader first")
        if self.ok:
            return
        state = "complete" if self.complete else "incomplete (header or trailer wrong or missing)"
        noun = "problem" if self.problem_count == 1 else "problems"
        message = f"file rejected: {state}, {self.problem_count} {noun}"
        if self.problems:
            message += f"; first: {self.problems[0]}"
        raise SlgRejected(
            message, problems=self.problems, problem_count=self.problem_count, complete=self.complete
        )

    def __iter__(self) -> Iterator[Record]:
        """The valid detail records in file order; a reader reads its stream once."""
        if self._started:
            raise SlgError("an SlgReader reads its stream once; make a new reader to read it again")
        self._started = True
        return self._read()

    # Input --------------------------------------------------------------------------------------

    def _chunks(self) -> Iterator[bytes]:
        """The stream as bytes chunks of at most _CHUNK bytes, whatever the caller handed in."""
        stream = self._stream
        if isinstance(stream, bytes | bytearray | memoryview):
            data = bytes(stream)
            for i in range(0, len(data), _CHUNK):
                yield data[i : i + _CHUNK]
            return
        read = getattr(stream, "read", None)
        if callable(read):
            while True:
                try:
                    chunk = read(_CHUNK)
                except (OSError, ValueError) as exc:
                    raise SlgReadError(f"reading the stream failed: {exc}") from exc
                if not chunk:
                    return
                yield self._as_bytes(chunk)
        try:
            chunks = iter(stream)
        except TypeError as exc:
            raise SlgError(f"cannot read SLG data from a {type(stream).__name__}") from exc
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except (OSError, ValueError) as exc:
                raise SlgReadError(f"reading the stream failed: {exc}") from exc
            chunk = self._as_bytes(chunk)
            # A caller's huge chunk is cut so that splitting it never makes more than a chunk's lines.
            for i in range(0, len(chunk), _CHUNK):
                yield chunk[i : i + _CHUNK]

    @staticmethod
    def _as_bytes(chunk: Any) -> bytes:
        """A chunk as immutable bytes (dict lookups need hashable keys), or SlgError."""
        if type(chunk) is bytes:
            return chunk
        if isinstance(chunk, bytes | bytearray | memoryview):
            return bytes(chunk)
        if isinstance(chunk, str):
            raise SlgError("the stream yields text; open the file in binary mode ('rb') or pass bytes")
        raise SlgError(f"the stream yields {type(chunk).__name__}, not bytes")

    def _read(self) -> Iterator[Record]:
        """Split the stream into lines; `_lines` handles each complete line, `_line` the odd ones here."""
        # Kept short on purpose: tracemalloc (and so the memory test) pays, on every allocation,
        # a scan of the allocating function's line table, and the split below allocates every line.
        lineno = 0
        carry = b""  # the start of a line whose end is in a later chunk
        carry_total = 0  # > 0 once the carry overflowed _KEEP: the line's true length so far
        carry_last = 0  # the last byte seen of an overflowed line (is it the CR of a CRLF?)
        try:
            # A last LF after the data ends the last line the same way whether or not the file has
            # one; if it had, the extra line is an empty one at the end, which is ignored.
            for chunk in itertools.chain(self._chunks(), (b"\n",)):
                parts = chunk.split(b"\n")
                rest = parts.pop()
                if parts:
                    if carry_total:
                        first = parts.pop(0)
                        last = first[-1] if first else carry_last
                        lineno += 1
                        record = self._odd(carry, lineno, carry_total + len(first) - (last == _CR))
                        if record is not None:
                            yield record
                    elif carry:
                        parts[0] = carry + parts[0]
                    carry, carry_total = b"", 0
                    lineno = yield from self._lines(parts, lineno)
                # What follows the last LF starts the next line.
                if carry_total:
                    carry_total += len(rest)
                    carry_last = rest[-1] if rest else carry_last
                elif rest:
                    carry += rest
                    if len(carry) > _KEEP:
                        carry_total, carry_last = len(carry), carry[-1]
                        carry = carry[:_KEEP]
            self._finish(lineno)
        finally:
            self._stream = b""  # let go of the caller's stream

    def _lines(self, parts: list[bytes], lineno: int) -> Generator[Record, None, int]:
        """Handle complete lines (without their LF); returns the number of the last.

        A detail line as it nearly always is (every field valid, the same CPE and date as the line
        before, the interval after its) is handled by the first `if`, which allocates only the
        line's number, its energy and its Record. The layout is deliberate: tracemalloc (and so
        the memory test) pays on every allocation a scan of the function's line table up to the
        allocating instruction, so those instructions come first. A line that starts a run or
        comes out of order takes the second `if`; anything else goes to `_odd`.
        """
        labels, label_slot, body = _NEXT_LABEL, _LABEL_SLOT, self._body
        prefix, cpe, starts, ends, seen = self._run
        expect = 0  # the slot the next line of the run should hold
        for raw in parts:
            lineno += 1
            value = raw[34:44]
            size = len(raw)
            if size and raw[-1] == _CR:
                size -= 1
            if (
                body
                and raw.startswith(prefix, 2)
                and 45 <= size <= 100
                and raw.startswith(labels[expect], 30)
                and seen[_LAST_POS - expect] == _ZERO
                and value.isdigit()
                and raw[44] in _TYPES
                and raw.startswith(b"20")
                and raw.count(b" ", 45, size) == size - 45
            ):
                seen[_LAST_POS - expect] = _ONE
                yield Record(lineno, cpe, starts[expect], ends[expect], int(value), raw[44] == _E)
                expect += 1
                continue
            if (
                body
                and 45 <= size <= 100
                and raw.startswith(b"20")
                and raw.count(b" ", 45, size) == size - 45
            ):
                if not raw.startswith(prefix, 2):
                    self._open_run(raw)
                    prefix, cpe, starts, ends, seen = self._run
                slot = label_slot.get(raw[30:34])
                kind = raw[44]
                if (
                    seen
                    and slot is not None
                    and seen[_LAST_POS - slot] == _ZERO
                    and value.isdigit()
                    and kind in _TYPES
                ):
                    seen[_LAST_POS - slot] = _ONE
                    expect = slot + 1
                    yield Record(lineno, cpe, starts[slot], ends[slot], int(value), kind == _E)
                    continue
            record = self._odd(raw[:size], lineno, size)
            prefix, cpe, starts, ends, seen = self._run
            body = self._body
            if record is not None:
                yield record
        return lineno

    def _open_run(self, raw: bytes) -> None:
        """Start the fast path's run of lines for this line's CPE and date, if both are known valid."""
        self._close_run()
        cpe = self._cpes.get(raw[2:22])
        day = self._dates.get(raw[22:30])
        if cpe is None or day is None:
            return  # not seen yet, so not checked yet: `_odd` does that
        ordinal = day[0]
        spans = self._spans.get(ordinal)
        if spans is None:
            if len(self._spans) >= _SPAN_DATES:
                self._spans.clear()
            spans = self._spans[ordinal] = _spans(day[1], day[2])
        starts, ends, taken = spans
        self._run_key = key = cpe[0] + ordinal
        seen = bytearray(format(self._state.get(key, 0) | taken, _MASK_FORMAT), "ascii")
        self._run = (raw[2:30], cpe[1], starts, ends, seen)

    def _close_run(self) -> None:
        """Store the run's intervals in the per-CPE-day state and stop the run."""
        if self._run_key is not None:
            mask = int(self._run[4], 2)
            self._state[self._run_key] = _FULL_DAY if mask == _FULL_DAY else mask
            self._run_key = None
            self._run = _NO_RUN

    def _odd(self, raw: bytes, lineno: int, length: int) -> Record | None:
        """Handle a line the fast path did not: close its run first so the state is the whole truth."""
        self._close_run()
        self._odd_lines += 1
        record = self._line(raw, lineno, length)
        self._body = (
            self._first_record is not None and self._trailer_line is None and self._blank_from is None
        )
        return record

    def _details_until(self, lineno: int) -> int:
        """Detail records seen up to this line: those `_line` saw plus every line the fast path took."""
        return self._odd_details + lineno - self._odd_lines

    # Lines ----------------------------------------------------------------------------------------

    def _problem(
        self, line: int | None, field: str | None, message: str, *, structural: bool = False
    ) -> None:
        """Count a problem and keep it while fewer than max_problems are kept."""
        self.problem_count += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(Problem(line, field, message))
        if structural:
            self._structure_ok = False

    def _line(self, raw: bytes, lineno: int, length: int) -> Record | None:
        """Handle any line (its LF and the CR of a CRLF already removed); `length` is its true length."""
        if lineno == 1 and raw.startswith(_BOM):
            # A UTF-8 byte order mark cannot change a field (it comes before the record type and
            # every field is checked byte by byte), so it is skipped and noted, not rejected.
            raw, length = raw[3:], length - 3
            self.had_bom = True
        if self._skip(raw, lineno, length):
            return None
        kind = raw[:2]
        first = self._first_record is None
        if first:
            self._first_record = lineno
            if kind != b"00":
                name = _KIND_NAME.get(kind)
                found = f"a {name} record" if name else f"a record of type {_show(kind)}"
                self._problem(
                    lineno,
                    "record_type",
                    f"the file must start with a header (00) record, not {found}",
                    structural=True,
                )
        if kind == b"20":
            self._odd_details += 1
            record = self._detail(raw, lineno, length)
            if record is not None:
                self._odd_valid += 1
            return record
        if kind == b"00":
            if first:
                self._header(raw, lineno, length)
            else:
                self._problem(
                    lineno,
                    "record_type",
                    f"a second header (00) record; the header is line {self._header_line}"
                    if self._header_line is not None
                    else f"a header (00) record after line {self._first_record}; the header must come first",
                    structural=True,
                )
            return None
        if kind == b"99":
            self._trailer(raw, lineno, length)
            return None
        self._problem(
            lineno, "record_type", f"{_show(kind)} is not a record type (00, 20 or 99)", structural=True
        )
        return None

    def _skip(self, raw: bytes, lineno: int, length: int) -> bool:
        """Deal with blank lines and lines after the trailer; True if the line is done with."""
        if length <= RECORD_LENGTH and not raw.strip(b" "):
            if self._trailer_line is None:
                # Blank lines are wrong only when a record follows them: trailing ones are fine.
                if self._blank_from is None:
                    self._blank_from = lineno
                self._blank_count += 1
            return True
        if self._trailer_line is not None:
            if not self._after_trailer:
                self._after_trailer = True
                self._problem(
                    lineno,
                    None,
                    f"content after the trailer (99) record at line {self._trailer_line}; "
                    "a file ends with its trailer, so this line and any after it are ignored",
                    structural=True,
                )
            return True
        if self._blank_from is not None:
            for blank in range(self._blank_from, self._blank_from + self._blank_count):
                self._problem(blank, None, "blank line inside the file")
            self._blank_from, self._blank_count = None, 0
        return False

    def _shape(self, raw: bytes, lineno: int, length: int, used: int) -> bool:
        """Check the line's length, line end and padding after its last field; False if wrong."""
        if b"\r" in raw:
            self._problem(
                lineno,
                None,
                "a carriage return (CR) inside the line: lines end in LF or CRLF, "
                "CR-only line ends are not accepted",
            )
            return False
        if length > RECORD_LENGTH:
            self._problem(lineno, None, f"the record is {length} characters long; at most {RECORD_LENGTH}")
            return False
        padding = raw[used:]
        stripped = padding.lstrip(b" ")
        if stripped:
            position = used + len(padding) - len(stripped) + 1
            self._problem(
                lineno,
                "padding",
                f"position {position} holds {stripped[:1].decode('latin-1')!r}; "
                f"positions {used + 1}-{RECORD_LENGTH} must be spaces",
            )
            return False
        return True

    def _short(self, raw: bytes, lineno: int, fields: tuple[tuple[str, int, int], ...], what: str) -> bool:
        """Report a record that ends inside one of its fields; True if it does."""
        size = len(raw)
        for name, begin, end in fields:
            if end > size:
                self._problem(
                    lineno,
                    name,
                    f"the {what} record is {size} characters long and ends inside {name} "
                    f"(positions {begin + 1}-{end})",
                )
                return True
        return False

    def _header(self, raw: bytes, lineno: int, length: int) -> None:
        """Check the header record and keep it."""
        self._header_line = lineno
        good = self._shape(raw, lineno, length, 24)
        if self._short(raw, lineno, _HEADER_FIELDS, "header"):
            return
        sender_raw = raw[2:12]
        sender = sender_raw.rstrip(b" ")
        if not sender:
            good = False
            self._problem(lineno, "sender", "the sender code is empty")
        elif sender_raw[:1] == b" ":
            good = False
            self._problem(lineno, "sender", f"{sender_raw.decode('latin-1')!r} is not left-aligned")
        elif _CONTROL_RE.search(sender):
            good = False
            self._problem(lineno, "sender", f"{_show(sender)} holds a control character")
        file_date, why = _parse_date(raw[12:20])
        if why:
            good = False
            self._problem(lineno, "file_date", why)
        sequence = raw[20:24]
        if not sequence.isdigit():
            good = False
            self._problem(lineno, "sequence", f"{_show(sequence)} is not a 4-digit sequence number")
        if good and file_date is not None:
            self.header = Header(sender.decode("latin-1"), file_date, int(sequence))
            self._header_ok = True
        else:
            self._structure_ok = False

    def _trailer(self, raw: bytes, lineno: int, length: int) -> None:
        """Check the trailer record and its count of detail records."""
        self._trailer_line = lineno
        good = self._shape(raw, lineno, length, 20)
        if self._short(raw, lineno, _TRAILER_FIELDS, "trailer"):
            self._structure_ok = False
            return
        label = raw[2:12]
        if label != b"TOTAL     ":
            good = False
            self._problem(lineno, "total_label", f"{label.decode('latin-1')!r} is not 'TOTAL' left-aligned")
        count = raw[12:20]
        if not count.isdigit():
            good = False
            self._problem(lineno, "count", f"{_show(count)} is not an 8-digit count")
        elif int(count) != (details := self._details_until(lineno)):
            good = False
            self._problem(
                lineno,
                "count",
                f"the trailer counts {int(count)} detail records but the file has {details}",
                structural=True,
            )
        if good:
            self._trailer_ok = True
        else:
            self._structure_ok = False

    def _detail(self, raw: bytes, lineno: int, length: int) -> Record | None:
        """Check a detail record field by field, then place its interval in time; None if wrong."""
        good = self._shape(raw, lineno, length, 45)
        if self._short(raw, lineno, _DETAIL_FIELDS, "detail"):
            return None
        cpe = self._cpe(raw[2:22], lineno)
        day = self._date(raw[22:30], lineno)
        slot = _LABEL_SLOT.get(raw[30:34])
        if slot is None:
            self._problem(lineno, "time", _time_problem(raw[30:34]))
        value = raw[34:44]
        if not value.isdigit():
            good = False
            self._problem(lineno, "energy", f"{_show(value)} is not 10 digits (hundredths of kWh)")
        if raw[44] not in _TYPES:
            good = False
            self._problem(
                lineno, "reading_type", f"{_show(raw[44:45])} is not a reading type (R real, E estimated)"
            )
        if not good or cpe is None or day is None or slot is None:
            return None
        start = self._place(cpe, day, slot, lineno)
        if start is None:
            return None
        return Record(lineno, cpe[1], start, start + INTERVAL, int(value), raw[44] == _E)

    def _place(
        self, cpe: tuple[int, str], day: tuple[int, datetime | None, Any], slot: int, lineno: int
    ) -> datetime | None:
        """The UTC start of a valid interval label, by the clock-change and duplicate rules; None if wrong."""
        ordinal, base, table = day
        key = cpe[0] + ordinal
        mask = self._state.get(key, 0)
        bit = _SLOT_BIT[slot]
        if table is None:
            assert base is not None  # _day gives an ordinary day (no table) its base
            where, start, later = _NORMAL, base + _SLOT_DELTA[slot], None
        else:
            where, start, later = table[slot]
        when = f"{date.fromordinal(ordinal):%Y-%m-%d} {_SLOT_LABEL[slot]}"
        if where == _SKIPPED:
            self._problem(
                lineno,
                "time",
                f"{when} would start at {_clock(slot)}, a local time that does not exist in "
                f"{self.tz.key or self.tz} (the clocks go forward over it)",
            )
            return None
        if mask & bit and where == _REPEATED:
            # The second pass over the repeated hour is the later instant; a third is an error.
            bit <<= _SLOTS
            start = later
            if mask & bit:
                self._problem(
                    lineno,
                    "time",
                    f"{cpe[1]} {when} appears a third time; an interval in the hour the clocks go back "
                    "over appears at most twice",
                )
                return None
        elif mask & bit:
            self._problem(
                lineno, "time", f"{cpe[1]} {when} is a duplicate: the file has this interval already"
            )
            return None
        mask |= bit
        self._state[key] = _FULL_DAY if mask == _FULL_DAY else mask
        return start

    def _cpe(self, raw: bytes, lineno: int) -> tuple[int, str] | None:
        """The CPE field as (state key base, code), remembered once valid; None after a problem."""
        known = self._cpes.get(raw)
        if known is not None:
            return known
        if not raw.strip(b" "):
            self._problem(lineno, "cpe", "the CPE is empty")
            return None
        if not _CPE_RE.fullmatch(raw):
            shown = raw.decode("latin-1")
            why = (
                "is not left-aligned"
                if raw[:1] == b" "
                else "is not a CPE (up to 20 capital letters and digits)"
            )
            self._problem(lineno, "cpe", f"{shown!r} {why}")
            return None
        known = (len(self._cpes) * _ORDINAL_SPAN, raw.rstrip(b" ").decode("ascii"))
        self._cpes[raw] = known
        return known

    def _date(
        self, raw: bytes, lineno: int
    ) -> tuple[int, datetime | None, tuple[tuple[Any, ...], ...] | None] | None:
        """The date field as (ordinal, utc midnight or None, table or None), cached; None after a problem."""
        known = self._dates.get(raw)
        if known is not None:
            return known
        value, why = _parse_date(raw)
        if value is None:
            self._problem(lineno, "date", why or "not a date")
            return None
        if len(self._dates) >= 4096:
            # Far more dates than any file spans; dropping the cache only costs recomputing it.
            self._dates.clear()
        base, table = _day(self.tz, value)
        known = (value.toordinal(), base, table)
        self._dates[raw] = known
        return known

    def _finish(self, lineno: int) -> None:
        """Checks that need the whole file (is it empty, does it end with a trailer), and the counts."""
        self._close_run()
        self.records = self._details_until(lineno)
        self.valid = self._odd_valid + lineno - self._odd_lines
        if self._first_record is None:
            self._problem(None, None, "the file is empty: no header, no records, no trailer", structural=True)
        elif self._trailer_line is None:
            # The fast path keeps no note of lines; the last record is the last line but trailing blanks.
            self._problem(
                lineno if self._blank_from is None else self._blank_from - 1,
                None,
                "the file ends without a trailer (99) record (a transfer cut short looks like this)",
                structural=True,
            )
        self.finished = True


# The writer ---------------------------------------------------------------------------------------


def write_slg(
    records: Iterable[tuple[str, datetime, int, bool]],
    *,
    tz: ZoneInfo,
    sender: str = "ENERGYDASH",
    file_date: date,
    sequence: int = 1,
    newline: bytes = b"\r\n",
    pad: bool = True,
) -> Iterator[bytes]:
    """Encode (cpe, interval start, centi_kwh, estimated) records as SLG v2 lines, header to trailer.

    Anything the reader would not read back as the same records raises SlgError (with the line it
    would have been): a duplicate interval, an instant not on a local quarter hour, or the later
    pass over a repeated hour before the earlier one.
    """
    if not isinstance(tz, ZoneInfo):
        raise SlgError(f"tz must be a zoneinfo.ZoneInfo, not {type(tz).__name__}")
    if not isinstance(sender, str) or not 1 <= len(sender) <= 10 or sender != sender.strip(" "):
        raise SlgError(f"sender must be 1-10 characters without surrounding spaces, not {sender!r}", line=1)
    if _CONTROL_STR_RE.search(sender) or max(map(ord, sender)) > 0xFF:
        raise SlgError(f"sender {sender!r} is not printable ISO-8859-1 text", line=1)
    if isinstance(file_date, datetime) or not isinstance(file_date, date):
        raise SlgError(f"file_date must be a date, not {file_date!r}", line=1)
    if not _MIN_YEAR <= file_date.year <= _MAX_YEAR:
        raise SlgError(f"file_date {file_date} is outside the years {_MIN_YEAR}-{_MAX_YEAR}", line=1)
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence <= 9999:
        raise SlgError(f"sequence must be 0-9999, not {sequence!r}", line=1)
    if newline not in (b"\n", b"\r\n"):
        raise SlgError(f"newline must be b'\\n' or b'\\r\\n', not {newline!r}")
    header = f"00{sender:<10}{file_date:%Y%m%d}{sequence:04d}"
    return _write(records, tz, header, newline, pad)


def _write(
    records: Iterable[tuple[str, datetime, int, bool]], tz: ZoneInfo, header: str, newline: bytes, pad: bool
) -> Iterator[bytes]:
    """The lines of `write_slg`, produced lazily so that a million records need no list."""
    width = RECORD_LENGTH if pad else 0
    yield header.ljust(width).encode("latin-1") + newline
    days: dict[date, tuple[int, str, tuple[tuple[Any, ...], ...] | None]] = {}
    cpes: dict[str, tuple[int, str]] = {}  # cpe -> (state key base, "20" + the padded field)
    state: dict[int, int] = {}  # the reader's per-CPE-day bitmasks, to refuse what it would refuse
    line = 1
    for item in records:
        line += 1
        try:
            cpe, start, centi_kwh, estimated = item
        except (TypeError, ValueError) as exc:
            raise SlgError("a record is (cpe, start, centi_kwh, estimated)", line=line) from exc
        known_cpe = cpes.get(cpe) if type(cpe) is str else None
        if known_cpe is None:
            known_cpe = cpes[cpe] = _write_cpe(cpe, line, len(cpes))
        local = _write_checked(start, centi_kwh, estimated, tz, line)
        day = local.date()
        known_day = days.get(day)
        if known_day is None:
            if not _MIN_YEAR <= day.year <= _MAX_YEAR:
                raise SlgError(f"{day} is outside the years {_MIN_YEAR}-{_MAX_YEAR}", line=line, field="date")
            if len(days) >= 4096:
                days.clear()
            known_day = days[day] = (day.toordinal(), f"{day:%Y%m%d}", _day(tz, day)[1])
        slot = local.hour * 4 + local.minute // 15
        key = known_cpe[0] + known_day[0]
        mask = state.get(key, 0)
        table = known_day[2]
        bit = _SLOT_BIT[slot]
        if table is not None and table[slot][0] == _REPEATED and start != table[slot][1]:
            # The later pass over a repeated hour: a reader takes the first occurrence of a label
            # for the earlier instant, so the later one can only follow it.
            if not mask & bit:
                raise SlgError(
                    f"{cpe} {day} {_SLOT_LABEL[slot]}: the later pass over the repeated hour comes "
                    "before the earlier one, which a reader would take it for",
                    line=line,
                    field="time",
                )
            bit <<= _SLOTS
        if mask & bit:
            raise SlgError(
                f"{cpe} {day} {_SLOT_LABEL[slot]} is a duplicate interval", line=line, field="time"
            )
        state[key] = mask | bit
        text = f"{known_cpe[1]}{known_day[1]}{_SLOT_LABEL[slot]}{centi_kwh:010d}{'E' if estimated else 'R'}"
        yield text.ljust(width).encode("ascii") + newline
    yield f"99{'TOTAL':<10}{line - 1:08d}".ljust(width).encode("ascii") + newline


def _write_cpe(cpe: Any, line: int, index: int) -> tuple[int, str]:
    """A new CPE for the writer: its state key base and the start of its lines, or SlgError."""
    if type(cpe) is not str or not _CPE_STR_RE.fullmatch(cpe):
        raise SlgError(f"{cpe!r} is not a CPE (1-20 capital letters and digits)", line=line, field="cpe")
    return index * _ORDINAL_SPAN, f"20{cpe:<20}"


def _write_checked(start: Any, centi_kwh: Any, estimated: Any, tz: ZoneInfo, line: int) -> datetime:
    """A record's start as local time in `tz`, once its start, energy and type are known writable."""
    if line > 100_000_000:
        raise SlgError("more than 99,999,999 detail records do not fit the trailer's count", line=line)
    if not isinstance(start, datetime) or start.utcoffset() is None:
        raise SlgError(f"the start {start!r} is not an aware datetime", line=line, field="time")
    if type(centi_kwh) is not int or not 0 <= centi_kwh <= 9_999_999_999:
        raise SlgError(f"{centi_kwh!r} is not 0-9999999999 hundredths of kWh", line=line, field="energy")
    if type(estimated) is not bool:
        raise SlgError(f"estimated must be a bool, not {estimated!r}", line=line, field="reading_type")
    local = start.astimezone(tz)
    if local.minute % 15 or local.second or local.microsecond:
        raise SlgError(f"{local} is not on a local quarter hour", line=line, field="time")
    return local
