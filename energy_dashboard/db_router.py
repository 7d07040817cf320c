"""Keeps each module's tables on its own database alias (docs/architecture.md, "Boundaries"; ADR 0001)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

# App label -> alias. Everything else (auth, admin, sessions, contenttypes, beat schedules,
# tokens) lives on "default".
MODULE_ALIASES: dict[str, str] = {
    "sensors": "sensors",
    "demand_response": "demand_response",
    "ingestion": "ingestion",
}


def alias_for_app(app_label: str) -> str:
    """The database alias that holds an app's tables."""
    return MODULE_ALIASES.get(app_label, "default")


def same_database(alias_a: str, alias_b: str) -> bool:
    """True when two aliases name one physical database (e.g. all four on one PostgreSQL)."""
    # DATABASE_IDENTITIES is computed in settings from the configured URLs, so it still holds
    # after the test runner renames each alias's database.
    identities = settings.DATABASE_IDENTITIES
    return alias_a == alias_b or identities[alias_a] == identities[alias_b]


class ModuleRouter:
    """Reads, writes and migrations of each app go to its alias; relations never cross."""

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str:
        return alias_for_app(model._meta.app_label)

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str:
        return alias_for_app(model._meta.app_label)

    def allow_relation(self, obj1: models.Model, obj2: models.Model, **hints: Any) -> bool:
        # False, not None: None would let Django fall back to allowing same-database relations,
        # and modules refer to each other by stable keys only.
        return alias_for_app(obj1._meta.app_label) == alias_for_app(obj2._meta.app_label)

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        # When several aliases share one database, Django records every app's migrations in
        # that database's single django_migrations table on the first `migrate`; so whichever
        # alias migrates first must create the tables of every app that lives there.
        return same_database(db, alias_for_app(app_label))
