"""migrate_all and create_token."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db(databases="__all__")


def test_migrate_all_migrates_every_alias() -> None:
    out = StringIO()
    call_command("migrate_all", stdout=out)
    for alias in ("default", "sensors", "demand_response", "ingestion"):
        assert f"Migrating database '{alias}'" in out.getvalue()
    # Nothing left to apply anywhere.
    call_command("migrate_all", check=True, verbosity=0)


def test_create_token_prints_a_working_token(operator: Any, api: Any) -> None:
    out = StringIO()
    call_command("create_token", "op", stdout=out)
    key = out.getvalue().strip()
    assert Token.objects.get(user=operator).key == key
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/overview").status_code == 200

    again = StringIO()
    call_command("create_token", "op", stdout=again)
    assert again.getvalue().strip() == key
    reset = StringIO()
    call_command("create_token", "op", "--reset", stdout=reset)
    assert reset.getvalue().strip() != key


def test_create_token_for_unknown_user_fails_clearly() -> None:
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("create_token", "ghost")
