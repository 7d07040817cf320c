"""The public face of the sensors module: other modules and the project call only this.

Each name is defined, under that name, in the file of its subject:

- `registry`: rooms and sensors, their changes and status, and the meters imports register;
- `readings`: readings in, as items (`readings_ingest`) or typed rows (`readings_import`),
  checked by `sensors.rules` and stored by `sensors.storage`;
- `upkeep`: rollups and room metrics brought up to date, backfills, retention;
- `demo`: the demo building, its history and its synthetic live readings;
- `sensors.analytics`, the module's read side: series, energy, the summary, free queries, a
  room's latest figures, the reads other modules make (latest power, quarter-hour load), and
  the overview's energy comparisons and meter breakdown (a nested meter counted once:
  `sensors.hierarchy`).

Inside the sensors module its own files import each other freely; import-linter holds every
other module to this package (pyproject.toml, "other modules reach sensors only through
sensors.services").
"""

from sensors.analytics import (
    analytics_summary,
    analytics_summary_json,
    data_query,
    default_metric,
    energy_breakdown,
    energy_comparison,
    energy_comparison_json,
    energy_report,
    energy_report_json,
    energy_rows,
    load_kw_quarter_hours,
    meter_parents,
    overview_live,
    power_latest,
    room_detail,
    room_latest,
    room_series,
    sensor_series,
    sensor_series_rows,
    sensors_latest,
    sensors_table,
)
from sensors.services.demo import demo_history, demo_load, simulate
from sensors.services.readings import IngestResult, readings_import, readings_ingest, readings_transaction
from sensors.services.registry import (
    meters_for_external_ids,
    overview,
    room_create,
    room_delete,
    room_names,
    room_update,
    sensor_delete,
    sensor_register,
    sensor_update,
    sensors_known,
    sensors_list,
    sensors_mark_stale,
)
from sensors.services.upkeep import (
    aggregates_compute,
    planner_statistics_refresh,
    readings_cleanup,
    rollups_backfill,
    room_metrics_payload,
)

__all__ = [
    "IngestResult",
    "aggregates_compute",
    "analytics_summary",
    "analytics_summary_json",
    "data_query",
    "default_metric",
    "demo_history",
    "demo_load",
    "energy_breakdown",
    "energy_comparison",
    "energy_comparison_json",
    "energy_report",
    "energy_report_json",
    "energy_rows",
    "load_kw_quarter_hours",
    "meter_parents",
    "meters_for_external_ids",
    "overview",
    "overview_live",
    "planner_statistics_refresh",
    "power_latest",
    "readings_cleanup",
    "readings_import",
    "readings_ingest",
    "readings_transaction",
    "rollups_backfill",
    "room_create",
    "room_delete",
    "room_detail",
    "room_latest",
    "room_metrics_payload",
    "room_names",
    "room_series",
    "room_update",
    "sensor_delete",
    "sensor_register",
    "sensor_series",
    "sensor_series_rows",
    "sensor_update",
    "sensors_known",
    "sensors_latest",
    "sensors_list",
    "sensors_mark_stale",
    "sensors_table",
    "simulate",
]
