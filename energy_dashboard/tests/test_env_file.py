"""The set-up leaves a local `.env` for development (make's .env step), and the settings read it:
manage.py then works outside make, with DEBUG on and a key of the checkout's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE = Path(__file__).resolve().parents[2]
# What make exports and a developer's shell may hold: the file alone must give the settings.
UNSET = ("DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "ALLOWED_HOSTS", "ENV_FILE")


def _clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in UNSET}, **extra}


def _make_env_file(path: Path) -> subprocess.CompletedProcess[str]:
    # ENV_FILE moves the file, so the checkout's own .env is neither read nor written.
    return subprocess.run(
        ["make", "--no-print-directory", f"ENV_FILE={path}", str(path)],
        cwd=BASE,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _values(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_make_writes_a_development_env_file_once(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    first = _make_env_file(path)
    assert first.returncode == 0, first.stderr
    values = _values(path)
    assert values["DEBUG"] == "true"
    assert len(values["SECRET_KEY"]) >= 50
    assert not values["SECRET_KEY"].startswith("django-insecure")
    # A secret: readable by its owner only.
    assert path.stat().st_mode & 0o077 == 0

    # Written when none exists, never overwritten: the key (and the sessions signed with it) stays.
    again = _make_env_file(path)
    assert again.returncode == 0, again.stderr
    assert _values(path) == values

    other = tmp_path / "other.env"
    assert _make_env_file(other).returncode == 0
    assert _values(other)["SECRET_KEY"] != values["SECRET_KEY"]  # generated, not a fixed value


def test_manage_py_works_outside_make_with_the_written_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    assert _make_env_file(path).returncode == 0
    key = _values(path)["SECRET_KEY"]
    script = "from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)"

    # A documented command as written (README: `.venv/bin/python manage.py shell -c ...`),
    # with nothing in the environment but the file's location.
    with_file = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=BASE,
        env=_clean_env(ENV_FILE=str(path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert with_file.returncode == 0, with_file.stderr
    # The last line: Django's shell may first say how many objects it imported.
    assert with_file.stdout.strip().splitlines()[-1].split() == ["True", key]

    # The real environment wins over the file (as the settings say): production values stay.
    overridden = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE,
        env=_clean_env(ENV_FILE=str(path), DEBUG="false", SECRET_KEY=""),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert overridden.returncode != 0
    assert "SECRET_KEY is not set" in overridden.stderr


def test_the_env_file_is_never_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", ".env"], cwd=BASE, capture_output=True, timeout=30, check=False
    )
    assert ignored.returncode == 0, ".env must be in .gitignore"
