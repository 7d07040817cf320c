"""Field rules of a remote source that depend on the settings, shared by the model (hence the
admin's form) and the API's serializer."""

from __future__ import annotations

import functools
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

from ingestion import addresses


@functools.lru_cache(maxsize=8)
def _parsed(values: tuple[str, ...]) -> tuple[addresses.IPNetwork, ...]:
    return addresses.parse_networks(values)


def allowed_networks() -> tuple[addresses.IPNetwork, ...]:
    """INGESTION_ALLOWED_NETWORKS as networks (checked at start by the app's `ready()`)."""
    return _parsed(tuple(settings.INGESTION_ALLOWED_NETWORKS))


def validate_host(value: str) -> None:
    """A host name or IP literal a source may connect to (the address a name resolves to is
    checked again at every connection)."""
    problem = addresses.host_problem(value, allowed_networks())
    if problem is not None:
        raise ValidationError(problem, code="host")


def secret_path_allowed(path: str) -> bool:
    """Whether a source may read a file at `path` (a password, a key, a CA bundle): only an
    absolute path that resolves (symbolic links followed, `..` applied) inside
    INGESTION_SECRETS_DIR. Otherwise an operator could have any file the server can read sent
    to a host of their choosing as a password, or learn which files exist. The answer depends
    only on the path, never on whether a file is there."""
    if not path or not Path(path).is_absolute():
        return False
    root = Path(settings.INGESTION_SECRETS_DIR).resolve()
    try:
        return Path(path).resolve().is_relative_to(root)
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symbolic link loop (Python 3.11)
        return False


def validate_secret_path(value: str) -> None:
    """A file a source reads at connect time: under INGESTION_SECRETS_DIR (or empty)."""
    if value and not secret_path_allowed(value):
        raise ValidationError(
            f"files a source reads must be under INGESTION_SECRETS_DIR ({settings.INGESTION_SECRETS_DIR})",
            code="secret_path",
        )
