"""The reads the pages share: sources by name, the ledger newest first, one file with its errors."""

from __future__ import annotations

import io

import pytest

from ingestion import services
from ingestion.models import RemoteSource
from ingestion.tests.helpers import meter_file

pytestmark = pytest.mark.django_db(databases="__all__")


def test_sources_by_name_and_one_by_name() -> None:
    for name in ("zeta", "alpha"):
        RemoteSource.objects.create(name=name, host="ftp.example.com")
    assert [s.name for s in services.sources_list()] == ["alpha", "zeta"]
    found = services.source_get(name="zeta")
    assert found is not None and found.name == "zeta"
    assert services.source_get(name="nope") is None


def test_the_ledger_newest_first_by_status_and_a_file_with_its_errors() -> None:
    good = services.file_process(
        file_id=services.file_take(name="good.slg_v2", stream=io.BytesIO(meter_file("PT3001", count=4))).pk
    )
    bad = services.file_process(
        file_id=services.file_take(name="bad.slg_v2", stream=io.BytesIO(b"garbage")).pk
    )
    assert [f.pk for f in services.files_list()] == [bad.pk, good.pk]
    assert [f.pk for f in services.files_list(status="rejected")] == [bad.pk]
    assert "errors" in services.files_list().query.deferred_loading[0]
    found = services.file_get(file_id=bad.pk)
    assert found is not None and found.errors and found.errors[0]["line"] == 1
    assert services.file_get(file_id=999_999) is None
