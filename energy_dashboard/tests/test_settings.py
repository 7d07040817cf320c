"""Settings come from the environment and refuse unsafe production values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
    "ALLOWED_HOSTS": "energy.example.com",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base_env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE,
        env={**base_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_a_missing_secret_key() -> None:
    result = _manage("check", env={**PRODUCTION, "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_refuses_the_default_secret_key() -> None:
    from energy_dashboard.settings import INSECURE_DEV_SECRET_KEY

    result = _manage("check", env={**PRODUCTION, "SECRET_KEY": INSECURE_DEV_SECRET_KEY})
    assert result.returncode != 0
    assert "development default" in result.stderr


def test_production_refuses_empty_allowed_hosts() -> None:
    result = _manage("check", env={**PRODUCTION, "ALLOWED_HOSTS": ""})
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is empty" in result.stderr


def test_check_deploy_is_clean_with_production_values() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_secret_key_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-" + "y" * 50 + "\n")
    env = {**PRODUCTION, "SECRET_KEY": "", "SECRET_KEY_FILE": str(secret)}
    result = _manage("shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("from-a-file-" + "y" * 50)


def test_seed_variables_are_read(tmp_path: Path) -> None:
    env = {
        **PRODUCTION,
        "FTP_SA4CPS_HOST": "ftp.example.net",
        "FTP_SA4CPS_PROTOCOL": "sftp",
        "FTP_CHECK_INTERVAL": "3600",
        "FTP_SKIP_INITIAL_SCAN": "true",
        "PORT": "9000",
    }
    code = (
        "from django.conf import settings as s;"
        "print(s.FTP_SA4CPS_HOST, s.FTP_SA4CPS_PROTOCOL, s.FTP_CHECK_INTERVAL, "
        "s.FTP_SKIP_INITIAL_SCAN, s.PORT, s.WS_PORT)"
    )
    result = _manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-6:] == ["ftp.example.net", "sftp", "3600", "True", "9000", "9001"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FTP_SA4CPS_PROTOCOL", "gopher", "expected one of ftp, ftps, sftp"),
        ("FTP_CHECK_INTERVAL", "5", "at least 60 seconds"),
    ],
)
def test_invalid_values_stop_start_up_with_a_message(name: str, value: str, message: str) -> None:
    result = _manage("check", env={**PRODUCTION, name: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_every_setting_variable_is_documented_in_env_example() -> None:
    example = (BASE / ".env.example").read_text()
    source = (BASE / "energy_dashboard" / "settings.py").read_text()
    import re

    names = set(re.findall(r'env\.\w+\("([A-Z_]+)"', source)) | set(
        re.findall(r'secret\("([A-Z_]+)"', source)
    )
    names |= {
        "DATABASE_URL",
        "SENSORS_DATABASE_URL",
        "DEMAND_RESPONSE_DATABASE_URL",
        "INGESTION_DATABASE_URL",
    }
    missing = sorted(n for n in names if f"\n{n}=" not in example)
    assert not missing, f"not in .env.example: {missing}"


@pytest.mark.parametrize("variable", ["LIVE_MAX_SUBSCRIPTIONS", "LIVE_CLIENT_BUFFER"])
def test_live_feed_limits_below_one_stop_start_up(variable: str) -> None:
    result = _manage("check", env={"DEBUG": "true", variable: "0"})
    assert result.returncode != 0
    assert f"{variable}=0: at least 1." in result.stderr
