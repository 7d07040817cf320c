"""The meter hierarchy (Sensor.part_of) as every total reads it, so that none counts a nested
meter twice.

A sub-meter measures part of what its parent measures. So:

- the building's total is its top-level meters' (those part of no other meter);
- a room's share is what its meters measure net of their direct sub-meters: a meter's
  "own" energy (or power) is its reading minus its sub-meters' readings, the unmetered
  remainder of that level, and it belongs to the meter's room. A room holding a building's
  main meter gets that meter's remainder; a sub-meter's energy belongs to the sub-meter's
  room. The rooms' shares (with "unassigned" for meters in no room) then add up to the
  building's total exactly, whichever rooms the levels of a hierarchy are in.

Internal to the sensors module (analytics, aggregation); other modules read the totals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sensors.models import Sensor

UNASSIGNED = "unassigned"


@dataclass(frozen=True)
class Meters:
    """The registry's meters: each one's parent, room name and sensor_id, by primary key."""

    parent: dict[int, int | None]
    room: dict[int, str | None]
    sensor_id: dict[int, str]

    def is_top_level(self, pk: int) -> bool:
        """True for a sensor that is part of no other meter (every non-meter sensor too)."""
        return self.parent.get(pk) is None

    def shares(self, values: Iterable[tuple[int, str | None, float]]) -> dict[str, float]:
        """Per room name (UNASSIGNED for no room), the values net of their sub-meters': each
        (sensor pk, its room's name, value) adds to that room and subtracts from its parent's."""
        out: dict[str, float] = defaultdict(float)
        for pk, room, value in values:
            out[room or UNASSIGNED] += value
            parent = self.parent.get(pk)
            if parent is not None:
                out[self.room.get(parent) or UNASSIGNED] -= value
        return dict(out)

    def top_level_total(self, values: Iterable[tuple[int, float]]) -> float:
        """The sum of the top-level sensors' values: the building's total."""
        return sum(value for pk, value in values if self.is_top_level(pk))


def meters() -> Meters:
    """The meter kinds' sensors of the registry (one query). Sensors of other kinds are never
    part of a meter: absent here, they are top-level."""
    parent: dict[int, int | None] = {}
    room: dict[int, str | None] = {}
    sensor_id: dict[int, str] = {}
    for pk, part_of, room_name, key in Sensor.objects.filter(kind__in=Sensor.METER_KINDS).values_list(
        "pk", "part_of_id", "room__name", "sensor_id"
    ):
        parent[pk], room[pk], sensor_id[pk] = part_of, room_name, key
    return Meters(parent, room, sensor_id)
