"""Migrate every database alias, default first."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Apply migrations to every database alias (default first, then each module's)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="Exit non-zero if any alias has unapplied migrations."
        )

    def handle(self, *args: Any, check: bool = False, **options: Any) -> None:
        verbosity = options["verbosity"]
        # default first: it holds auth and contenttypes, which the post-migrate set-up (roles,
        # schedule) writes to.
        for alias in ["default", *(a for a in settings.DATABASES if a != "default")]:
            if verbosity:
                self.stdout.write(f"Migrating database '{alias}'")
            call_command(
                "migrate",
                database=alias,
                interactive=False,
                verbosity=max(verbosity - 1, 0),
                check_unapplied=check,
                stdout=self.stdout,
                stderr=self.stderr,
            )
