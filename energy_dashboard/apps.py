"""The project as an app: its migrations (roles), commands and post-migrate set-up."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _after_migrate(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    # post_migrate fires once per app; do the work once, on the database that holds auth and
    # beat (and again after a test flush, which empties those tables). When all aliases share
    # one database, a flush of any alias empties them.
    from energy_dashboard.db_router import same_database

    if sender.label != "energy_dashboard" or not same_database(using, "default"):
        return
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    from energy_dashboard.core.roles import sync_roles
    from energy_dashboard.schedule import sync_schedule

    # The modules' apps come after this one, so their permissions may not exist yet.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using="default")
    sync_roles()
    sync_schedule()


class EnergyDashboardConfig(AppConfig):
    """Registers the platform's post-migrate set-up."""

    name = "energy_dashboard"
    verbose_name = "Energy Dashboard platform"

    def ready(self) -> None:
        post_migrate.connect(_after_migrate, dispatch_uid="energy_dashboard.after_migrate")
