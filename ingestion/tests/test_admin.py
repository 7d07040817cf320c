"""The admin: sources (secrets never shown; scan now) and the ledger (read-only; re-process)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from ingestion import services
from ingestion.models import IngestedFile, RemoteSource
from ingestion.tests.helpers import meter_file, source_for
from ingestion.tests.servers import FtpServer

pytestmark = pytest.mark.django_db(databases="__all__")


def day_file(cpe: str) -> bytes:
    return meter_file(cpe, count=4)


def test_pages_render_and_never_show_a_secret(operator_client: Client) -> None:
    source = RemoteSource.objects.create(
        name="s", host="h.example", password="pw-in-db-123", private_key="KEYTEXT"
    )
    services.file_process(file_id=services.file_take(name="a.slg_v2", stream=io.BytesIO(b"junk")).pk)
    for path in (
        "/admin/ingestion/remotesource/",
        f"/admin/ingestion/remotesource/{source.pk}/change/",
        "/admin/ingestion/ingestedfile/",
        "/admin/ingestion/ingestedfile/?status__exact=rejected",
        f"/admin/ingestion/ingestedfile/{IngestedFile.objects.get().pk}/change/",
    ):
        page = operator_client.get(path)
        assert page.status_code == 200, path
        assert b"pw-in-db-123" not in page.content and b"KEYTEXT" not in page.content


def test_saving_a_source_without_retyping_the_password_keeps_it(operator_client: Client) -> None:
    source = RemoteSource.objects.create(name="s", host="h.example", username="u", password="keep-me")
    form = operator_client.get(f"/admin/ingestion/remotesource/{source.pk}/change/").context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data.update(host="other.example", password="", private_key="")
    answer = operator_client.post(f"/admin/ingestion/remotesource/{source.pk}/change/", data)
    assert answer.status_code == 302, answer.context["adminform"].form.errors
    source.refresh_from_db()
    assert (source.host, source.password) == ("other.example", "keep-me")


def test_scan_now_and_reprocess_actions(operator_client: Client, tmp_path: Path) -> None:
    server = FtpServer(tmp_path / "ftp")
    (server.home / "a.slg_v2").write_bytes(day_file("PT3001"))
    server.start()
    try:
        source = source_for(server, name="s")
        answer = operator_client.post(
            "/admin/ingestion/remotesource/",
            {"action": "scan_now", "_selected_action": [source.pk]},
            follow=True,
        )
    finally:
        server.stop()
    assert b"1 new file(s) taken" in answer.content
    row = IngestedFile.objects.get()
    assert row.status == "imported"
    answer = operator_client.post(
        "/admin/ingestion/ingestedfile/", {"action": "reprocess", "_selected_action": [row.pk]}, follow=True
    )
    assert b"imported: 0 readings added, 4 already present" in answer.content


def add_form_data(operator_client: Client, **fields: Any) -> dict[str, Any]:
    form = operator_client.get("/admin/ingestion/remotesource/add/").context["adminform"].form
    defaults = {name: field.initial for name, field in form.fields.items()}
    data = {k: v() if callable(v) else v for k, v in defaults.items() if v is not None and v is not False}
    return data | {"name": "new", "host": "ftp.example.com", "port": 0, "remote_path": "/"} | fields


def test_the_admin_form_refuses_what_the_api_refuses(operator_client: Client) -> None:
    answer = operator_client.post(
        "/admin/ingestion/remotesource/add/",
        add_form_data(operator_client, host="169.254.169.254", port=99999, ca_file="/etc/passwd"),
    )
    assert answer.status_code == 200
    errors = answer.context["adminform"].form.errors
    assert set(errors) >= {"host", "port", "ca_file"}
    assert not RemoteSource.objects.exists()
    accepted = operator_client.post("/admin/ingestion/remotesource/add/", add_form_data(operator_client))
    assert accepted.status_code == 302, accepted.context["adminform"].form.errors
    assert RemoteSource.objects.get().host == "ftp.example.com"


def test_the_admin_form_bounds_durations_and_zones(operator_client: Client) -> None:
    answer = operator_client.post(
        "/admin/ingestion/remotesource/add/",
        add_form_data(
            operator_client, interval_s=2**40, settle_s=1e6, time_zone="Mars/Olympus", host_key="junk"
        ),
    )
    assert answer.status_code == 200
    assert set(answer.context["adminform"].form.errors) >= {"interval_s", "settle_s", "time_zone", "host_key"}
    assert not RemoteSource.objects.exists()


def test_the_settings_source_is_not_edited_in_the_admin_either(
    operator_client: Client, settings: Any
) -> None:
    # Its connection fields come from FTP_SA4CPS_* (a CA file anywhere, a host the deployment
    # chose): the API refuses edits, and so does the admin, rather than validating them.
    settings.FTP_SA4CPS_HOST = "ftp.sa4cps.example"
    settings.FTP_SA4CPS_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
    source = services.default_source_sync()
    assert source is not None
    form = operator_client.get(f"/admin/ingestion/remotesource/{source.pk}/change/").context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    answer = operator_client.post(
        f"/admin/ingestion/remotesource/{source.pk}/change/", data | {"enabled": ""}
    )
    assert answer.status_code == 200
    assert "FTP_SA4CPS" in str(answer.context["adminform"].form.non_field_errors())
    assert RemoteSource.objects.get(pk=source.pk).enabled
