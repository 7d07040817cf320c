"""What every subject of the services shares: the module's database alias, its refusals
(`DRError`, `Conflict`), how an operator is recorded, the check of a row before it is saved,
how a periodic job skips a row it cannot handle, the clock and the ISO "Z" format (`iso_z`,
from energy_dashboard/core/clock.py).

Private to the package (hence the file's name): other modules use what `services/__init__.py`
exports. Its names carry no underscore because the subject files import them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import DatabaseError
from django.db.models import Model
from django.utils import timezone

from energy_dashboard.core import clock

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

logger = logging.getLogger(__name__)

# The module's database alias: its transactions and on-commit messages run there.
DB = "demand_response"
# Below this a remaining target counts as covered (float sums of kW).
EPSILON_KW = 1e-6


class DRError(Exception):
    """A request the module refuses; the message says why, for people, and `errors` which
    fields are at fault (field -> messages; empty when no one field is)."""

    code = "invalid"

    def __init__(self, message: str, errors: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(message)
        self.errors: dict[str, list[str]] = {name: list(texts) for name, texts in (errors or {}).items()}

    @classmethod
    def on(cls, name: str, message: str) -> DRError:
        """A refusal of one field's value."""
        return cls(message, {name: [message]})

    @classmethod
    def of(cls, errors: Mapping[str, Sequence[str]], prefix: str = "") -> DRError:
        """A refusal of several fields' values (a model's validation errors)."""
        errors = {("non_field_errors" if k == NON_FIELD_ERRORS else k): v for k, v in errors.items()}
        return cls(prefix + describe(errors), errors)


class Conflict(DRError):
    """The object is no longer in the state the request needs (already answered, finished...)."""

    code = "conflict"


def describe(errors: Mapping[str, Sequence[str]]) -> str:
    """Field errors as one line: "start: ...; end: ..."."""
    return "; ".join(f"{name}: {' '.join(texts)}" for name, texts in errors.items())


def validated(row: Model, *, exclude: Iterable[str] = ()) -> None:
    """Refuse a row about to be saved whose fields break the model's bounds and rules (the same
    validators and clean() the admin's forms run), naming the fields. The database's unique and
    check constraints stay the last word; the services check uniqueness themselves."""
    try:
        row.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise DRError.of(exc.message_dict) from exc


# What a row the periodic jobs cannot handle raises: its values (an overflow, a type, a value
# the database refuses) or a refusal of the services. Anything else (a lost connection to the
# broker, Celery's soft time limit) still stops the job, as it should.
ROW_ERRORS = (ArithmeticError, LookupError, TypeError, ValueError, DatabaseError, ValidationError, DRError)


@contextmanager
def skipping(done: dict[str, int], row: str, doing: str) -> Iterator[None]:
    """One row's step of a periodic job: a row it cannot handle is named in a warning, counted in
    done["errors"] and skipped, so that it never stops the job for the other rows."""
    try:
        yield
    except ROW_ERRORS as exc:
        logger.warning("%s skipped while %s: %s", row, doing, exc)
        done["errors"] += 1


def or_now(now: datetime | None) -> datetime:
    """The moment a caller gave (tests, a job's tick), else the clock's."""
    return now if now is not None else timezone.now()


def iso_z(moment: datetime | None) -> str | None:
    """An instant as ISO 8601 in UTC with "Z" (None stays None), as the API and dr_events show it."""
    return None if moment is None else clock.iso_z(moment)


def as_operator(user: AbstractBaseUser | AnonymousUser) -> str:
    """How an operator's action is recorded (`answered_by`, `created_by`, `cancelled_by`,
    `updated_by`), from the API and the admin alike: "operator:<username>"."""
    return f"operator:{user.get_username()}"
