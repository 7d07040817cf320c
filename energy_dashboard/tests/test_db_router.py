"""Each module's tables stay on its own alias; relations never cross modules."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections

from energy_dashboard.db_router import ModuleRouter, alias_for_app
from sensors.models import Room, Sensor

pytestmark = pytest.mark.django_db(databases="__all__")


def _tables(alias: str) -> set[str]:
    return set(connections[alias].introspection.table_names())


def test_each_app_is_routed_to_its_alias() -> None:
    router = ModuleRouter()
    assert router.db_for_write(Room) == "sensors"
    assert router.db_for_read(Sensor) == "sensors"
    assert router.db_for_write(User) == "default"
    assert alias_for_app("demand_response") == "demand_response"
    assert alias_for_app("ingestion") == "ingestion"


def test_rows_land_in_the_module_database() -> None:
    room = Room.objects.create(name="lab")
    assert room._state.db == "sensors"
    assert User.objects.create(username="x")._state.db == "default"


def test_migrations_put_tables_only_where_they_belong(settings: Any) -> None:
    sensors_tables = _tables("sensors")
    if len({settings.DATABASE_IDENTITIES[a] for a in settings.DATABASES}) == 1:
        # All aliases on one database (make test-postgres): one set of tables serves all.
        assert {"sensors_room", "auth_user"} <= _tables("default")
        return
    assert {"sensors_room", "sensors_sensor"} <= sensors_tables
    assert "auth_user" not in sensors_tables
    assert "sensors_room" not in _tables("default")
    assert "sensors_room" not in _tables("ingestion")
    assert "django_celery_beat_periodictask" in _tables("default")


def test_relation_across_modules_is_refused() -> None:
    router = ModuleRouter()
    room = Room(name="a")
    assert router.allow_relation(room, Sensor(sensor_id="s")) is True
    assert router.allow_relation(room, User(username="u")) is False


def test_allow_migrate_follows_the_physical_database(settings: Any) -> None:
    router = ModuleRouter()
    settings.DATABASE_IDENTITIES = {
        "default": ("sqlite", "a.db", "", ""),
        "sensors": ("sqlite", "b.db", "", ""),
        "demand_response": ("sqlite", "a.db", "", ""),
        "ingestion": ("sqlite", "c.db", "", ""),
    }
    assert router.allow_migrate("sensors", "sensors") is True
    assert router.allow_migrate("default", "sensors") is False
    assert router.allow_migrate("sensors", "auth") is False
    # default and demand_response share a.db: whichever migrates first creates both apps' tables.
    assert router.allow_migrate("default", "demand_response") is True
    assert router.allow_migrate("demand_response", "auth") is True
    assert router.allow_migrate("ingestion", "demand_response") is False
