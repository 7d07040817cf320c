"""Field rules of a remote source that depend on the settings, shared by the model (hence the
admin's form) and the API's serializer."""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError

from ingestion import addresses, remote

# Shell patterns a source may list: enough for every spelling of a producer's names.
MAX_PATTERNS = 20


def _control_characters(value: str, allowed: str = "") -> bool:
    return any(unicodedata.category(c) == "Cc" and c not in allowed for c in value)


def validate_printable(value: str) -> None:
    """One line of text without control characters: a line break in a user name or a path
    would end an FTP command and start another."""
    if _control_characters(value):
        raise ValidationError("no line breaks or other control characters", code="control_characters")


def validate_text_block(value: str) -> None:
    """Lines of text (a PEM key): line breaks and tabs, no other control characters."""
    if _control_characters(value, allowed="\n\r\t"):
        raise ValidationError("no control characters other than line breaks", code="control_characters")


def validate_patterns(value: str) -> None:
    """Space-separated shell patterns, printable, at most MAX_PATTERNS."""
    validate_printable(value)
    if len(value.split()) > MAX_PATTERNS:
        raise ValidationError(f"at most {MAX_PATTERNS} patterns", code="patterns")


def validate_time_zone(value: str) -> None:
    """An IANA time zone name (empty: the default)."""
    if not value:
        return
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone {value!r}", code="time_zone") from None


def validate_host_key(value: str) -> None:
    """SFTP host key pins (OpenSSH key lines or SHA256: fingerprints, one a line), read as a
    scan will read them, so that a typo fails here and not at the next scan."""
    if not value.strip():
        return
    validate_text_block(value)
    try:
        remote.parse_host_key_pins(value)
    except ValueError as exc:
        raise ValidationError(str(exc), code="host_key") from None


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
