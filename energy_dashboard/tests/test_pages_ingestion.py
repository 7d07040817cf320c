"""The ingestion page: sources with their last scan and "scan now" (a real FTP server), an
offered SFTP host key accepted, the ledger paginated, re-processing, uploads (a corrupt meter
file shows its errors with their line numbers); viewers see no control and their POSTs are
refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from energy_dashboard.pages import ingestion as page
from ingestion import services
from ingestion.models import IngestedFile, RemoteSource
from ingestion.tests.helpers import meter_file, source_for
from ingestion.tests.servers import FtpServer

pytestmark = pytest.mark.django_db(databases="__all__")

PAGE = "/ingestion/"
FINGERPRINT = "SHA256:Vg0fQ3qHkQ1lq1cGQXhQ3y8vxm1m1pQ0lq2bq5d7H2c"


def _client(user: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def corrupt_file() -> bytes:
    """A meter file with two bad detail lines: line 2's reading type, line 4's time."""
    lines = meter_file("PT4001", count=4).split(b"\r\n")
    lines[1] = lines[1][:44] + b"Q" + lines[1][45:]
    lines[3] = lines[3][:30] + b"2460" + lines[3][34:]
    return b"\r\n".join(lines)


@pytest.fixture
def offered(settings: Any) -> RemoteSource:
    """An SFTP source whose server offered a key nobody pinned yet."""
    source = RemoteSource.objects.create(name="utility-sftp", protocol="sftp", host="sftp.example.com")
    RemoteSource.objects.filter(pk=source.pk).update(
        offered_host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEx5b2tpbmdGb3JBS2V5SGVyZQ",
        offered_fingerprint=FINGERPRINT,
        last_scan_ok=False,
        last_error="the server's host key is not pinned",
    )
    source.refresh_from_db()
    return source


@pytest.fixture
def ftp(tmp_path: Path, settings: Any) -> Iterator[FtpServer]:
    settings.INGESTION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    server = FtpServer(tmp_path / "ftp")
    (server.home / "2026-11-01_meter.slg_v2").write_bytes(meter_file("PT4100", count=8))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """The worker's part runs here: Celery's eager mode runs queued tasks (a scan, then one
    import per new file) in this process, once the request's transaction commits."""
    from energy_dashboard.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = before


def test_an_operator_sees_sources_upload_and_ledger_controls(operator: User, offered: RemoteSource) -> None:
    row = services.file_process(file_id=services.file_take(name="bad.slg_v2", stream=_bytes(b"junk")).pk)
    html = _client(operator).get(PAGE).content.decode()
    assert 'data-source="utility-sftp"' in html and FINGERPRINT in html
    assert "/ingestion/sources/utility-sftp/accept-host-key" in html
    assert "/ingestion/sources/utility-sftp/scan" in html
    assert 'enctype="multipart/form-data"' in html and 'action="/ingestion/upload"' in html
    assert f"/ingestion/files/{row.pk}/reprocess" in html
    assert f'data-file="{row.pk}"' in html and "st-file-rejected" in html


def test_a_viewer_sees_the_state_but_no_control(viewer: User, offered: RemoteSource) -> None:
    row = services.file_process(file_id=services.file_take(name="bad.slg_v2", stream=_bytes(b"junk")).pk)
    html = _client(viewer).get(PAGE).content.decode()
    assert FINGERPRINT in html and f'data-file="{row.pk}"' in html
    for control in ("/accept-host-key", "/scan", "/ingestion/upload", "/reprocess", 'type="file"'):
        assert control not in html
    assert html.count("<form") == 2  # sign-out and the ledger's status filter (GET)


def _bytes(content: bytes) -> Any:
    import io

    return io.BytesIO(content)


def test_uploading_a_corrupt_file_shows_its_errors_with_line_numbers(operator: User) -> None:
    client = _client(operator, csrf=True)
    client.get(PAGE)
    upload = SimpleUploadedFile("corrupt.slg_v2", corrupt_file())
    response = client.post(
        "/ingestion/upload",
        {"file": upload, "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
        follow=True,
    )
    assert response.status_code == 200
    row = IngestedFile.objects.get(name="corrupt.slg_v2")
    assert response.redirect_chain == [(f"/ingestion/files/{row.pk}/", 302)]
    assert row.status == "rejected" and row.error_count == 2
    (message,) = _messages(response)
    assert message.startswith("corrupt.slg_v2: rejected.") and message.endswith("2 errors, listed below.")
    html = response.content.decode()
    assert 'data-error-line="2"' in html and 'data-error-line="4"' in html
    assert [e["line"] for e in response.context["errors"]] == [2, 4]
    assert "reading_type" in html and "2460" in html


def test_uploading_a_good_file_imports_it(operator: User) -> None:
    upload = SimpleUploadedFile("good.slg_v2", meter_file("PT4002", count=8))
    response = _client(operator).post("/ingestion/upload", {"file": upload}, follow=True)
    row = IngestedFile.objects.get(name="good.slg_v2")
    assert (row.status, row.inserted) == ("imported", 8)
    assert _messages(response)[0].startswith("good.slg_v2: imported.")


def test_an_upload_without_a_file_or_too_big_is_refused_with_a_message(operator: User, settings: Any) -> None:
    client = _client(operator)
    assert _messages(client.post("/ingestion/upload", {}, follow=True)) == ["Choose a meter file to upload."]
    settings.INGESTION_UPLOAD_MAX_BYTES = 100
    big = SimpleUploadedFile("big.slg_v2", meter_file("PT4003", count=8))
    (message,) = _messages(client.post("/ingestion/upload", {"file": big}, follow=True))
    assert message.startswith("The file is larger than the upload limit (100 bytes")
    # Past the framing allowance the body is refused before it is read.
    huge = SimpleUploadedFile("huge.slg_v2", b"0" * (100 + page.UPLOAD_FRAMING_BYTES + 1))
    (message,) = _messages(client.post("/ingestion/upload", {"file": huge}, follow=True))
    assert message.startswith("The file is larger than the upload limit")
    assert not IngestedFile.objects.exists()


def test_a_file_bigger_than_the_inline_limit_is_queued_for_a_worker(
    operator: User, settings: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    settings.INGESTION_INLINE_BYTES = 100
    client = _client(operator)
    upload = SimpleUploadedFile("big.slg_v2", corrupt_file())
    with django_capture_on_commit_callbacks(execute=True, using="ingestion"):
        answer = client.post("/ingestion/upload", {"file": upload})
        row = IngestedFile.objects.get()
        assert row.status == "downloaded"  # kept, not processed in the request
    assert answer["Location"] == f"/ingestion/files/{row.pk}/"
    page_ = client.get(answer["Location"])
    assert _messages(page_) == ["big.slg_v2: kept and queued for a worker; this page shows its outcome."]
    row.refresh_from_db()
    assert row.status == "rejected" and [e["line"] for e in row.errors] == [2, 4]
    assert [e["line"] for e in page_.context["errors"]] == [2, 4]
    # Re-processing it is queued too.
    with django_capture_on_commit_callbacks(execute=True, using="ingestion"):
        again = client.post(f"/ingestion/files/{row.pk}/reprocess", follow=True)
    assert _messages(again) == ["big.slg_v2: queued for a worker; this page shows its outcome."]
    assert IngestedFile.objects.get(pk=row.pk).attempts == row.attempts + 1


def test_an_upload_without_the_csrf_token_is_refused(operator: User) -> None:
    client = _client(operator, csrf=True)
    upload = SimpleUploadedFile("good.slg_v2", meter_file("PT4004", count=2))
    response = client.post("/ingestion/upload", {"file": upload}, HTTP_ACCEPT="text/html")
    assert response.status_code == 403 and "security token" in response.content.decode()
    assert not IngestedFile.objects.exists()


def test_forged_posts_by_a_viewer_with_a_valid_token_are_refused_and_change_nothing(
    viewer: User, offered: RemoteSource
) -> None:
    row = services.file_process(file_id=services.file_take(name="bad.slg_v2", stream=_bytes(b"junk")).pk)
    client = _client(viewer, csrf=True)
    client.get(PAGE)
    token = client.cookies["csrftoken"].value
    posts: list[tuple[str, dict[str, Any]]] = [
        ("/ingestion/upload", {"file": SimpleUploadedFile("v.slg_v2", meter_file("PT4005", count=2))}),
        (f"/ingestion/files/{row.pk}/reprocess", {}),
        ("/ingestion/sources/utility-sftp/scan", {}),
        ("/ingestion/sources/utility-sftp/accept-host-key", {"fingerprint": FINGERPRINT}),
    ]
    for url, body in posts:
        response = client.post(url, {**body, "csrfmiddlewaretoken": token}, HTTP_ACCEPT="text/html")
        assert response.status_code == 403, url
        assert "Only operators scan sources" in response.content.decode()
    offered.refresh_from_db()
    assert offered.host_key == "" and offered.offered_fingerprint == FINGERPRINT
    assert offered.last_scan_at is None
    assert list(IngestedFile.objects.values_list("name", "status", "attempts")) == [
        ("bad.slg_v2", "rejected", row.attempts)
    ]


def test_accepting_the_offered_host_key_pins_it(operator: User, offered: RemoteSource) -> None:
    client = _client(operator)
    wrong = client.post(
        "/ingestion/sources/utility-sftp/accept-host-key", {"fingerprint": "SHA256:other"}, follow=True
    )
    assert "the host key was not accepted" in _messages(wrong)[0]
    done = client.post(
        "/ingestion/sources/utility-sftp/accept-host-key", {"fingerprint": FINGERPRINT}, follow=True
    )
    assert _messages(done) == ["utility-sftp: host key pinned; the next scan uses it."]
    offered.refresh_from_db()
    assert offered.host_key.startswith("ssh-ed25519 ") and offered.offered_fingerprint == ""
    assert FINGERPRINT not in done.content.decode()


def test_scan_now_queues_the_scan_and_a_worker_takes_the_servers_new_file(
    operator: User, ftp: FtpServer, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    source = source_for(ftp, name="utility-ftp")
    client = _client(operator)
    with django_capture_on_commit_callbacks(execute=True, using="ingestion"):
        queued = client.post(f"/ingestion/sources/{source.name}/scan")
        # Queued, not run: the request answered before the scan started.
        assert (
            not IngestedFile.objects.exists() and RemoteSource.objects.get(pk=source.pk).last_scan_at is None
        )
    assert queued.status_code == 302
    assert queued["Location"] == "/ingestion/?scanned=utility-ftp#source-utility-ftp"
    response = client.get(queued["Location"])
    (message,) = _messages(response)
    assert message.startswith("utility-ftp: scan queued.")
    row = IngestedFile.objects.get()
    assert (row.name, row.status, row.inserted) == ("2026-11-01_meter.slg_v2", "imported", 8)
    html = response.content.decode()
    assert f'data-file="{row.pk}"' in html and "last scan ok" in html


def test_a_disabled_source_is_not_scanned(operator: User, offered: RemoteSource) -> None:
    RemoteSource.objects.filter(pk=offered.pk).update(enabled=False)
    response = _client(operator).post("/ingestion/sources/utility-sftp/scan", follow=True)
    assert _messages(response) == ["utility-sftp is disabled; enable it before scanning it."]


def test_reprocess_runs_a_kept_file_again(operator: User) -> None:
    row = services.file_process(file_id=services.file_take(name="bad.slg_v2", stream=_bytes(b"junk")).pk)
    response = _client(operator).post(f"/ingestion/files/{row.pk}/reprocess", follow=True)
    assert response.redirect_chain == [(f"/ingestion/files/{row.pk}/", 302)]
    assert _messages(response)[0].startswith("bad.slg_v2: rejected.")
    assert IngestedFile.objects.get(pk=row.pk).attempts == row.attempts + 1


def test_the_ledger_is_paginated_and_filtered_by_status(operator: User) -> None:
    for i in range(page.FILES_PER_PAGE + 2):
        services.file_take(name=f"f{i:02}.slg_v2", stream=_bytes(meter_file("PT4006", count=1)))
    client = _client(operator)
    first = client.get(PAGE)
    assert len(first.context["files"]) == page.FILES_PER_PAGE and "Page 1 of 2" in first.content.decode()
    second = client.get(PAGE, {"page": 2})
    assert [f.name for f in second.context["files"]] == ["f01.slg_v2", "f00.slg_v2"]
    assert client.get(PAGE, {"status": "rejected"}).context["files"].paginator.count == 0
    assert client.get(PAGE, {"status": "nonsense"}).context["status"] == ""


def test_a_file_page_that_does_not_exist_is_a_404_page(viewer: User) -> None:
    response = _client(viewer).get("/ingestion/files/999999/", HTTP_ACCEPT="text/html")
    assert response.status_code == 404 and "Page not found" in response.content.decode()


def test_enabled_mqtt_brokers_are_shown_with_their_state(viewer: User, redis_clean: Any) -> None:
    from ingestion.mqtt.models import Broker

    html = _client(viewer).get(PAGE).content.decode()
    assert "MQTT brokers" not in html  # none configured
    Broker.objects.create(name="site-broker", host="127.0.0.1")
    Broker.objects.create(name="old-broker", host="127.0.0.1", enabled=False)
    html = _client(viewer).get(PAGE).content.decode()
    assert 'data-broker="site-broker"' in html and 'data-broker="old-broker"' not in html
    assert "the MQTT ingester has not reported in" in html and "not connected" in html
