"""The ingestion API: sources (secrets write-only), the ledger, uploads, re-processing, status."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from energy_dashboard.testing import streamed
from ingestion import services
from ingestion.models import IngestedFile, RemoteSource
from ingestion.tests.helpers import meter_file
from ingestion.tests.servers import FtpServer

pytestmark = pytest.mark.django_db(databases="__all__")

LISBON = ZoneInfo("Europe/Lisbon")


def day_file(cpe: str, count: int = 8) -> bytes:
    return meter_file(cpe, count=count)


@pytest.fixture
def viewer_api(viewer: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(viewer)
    return client


SOURCE = {
    "name": "utility-ftp",
    "protocol": "ftp",
    "host": "ftp.example.com",
    "username": "meters",
    "password": "s3cret-pass",
    "remote_path": "/out",
}


def test_operators_create_sources_and_the_password_is_never_returned(operator_api: APIClient) -> None:
    created = operator_api.post("/api/v1/ingestion/sources/", SOURCE, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert "password" not in body and "private_key" not in body
    assert body["has_password"] is True and body["patterns"] == "*.slg_v2 *.sgl_v2"
    assert RemoteSource.objects.get(name="utility-ftp").password == "s3cret-pass"
    listed = operator_api.get("/api/v1/ingestion/sources/").json()
    assert "s3cret-pass" not in str(listed)
    detail = operator_api.get("/api/v1/ingestion/sources/utility-ftp")
    assert detail.status_code == 200 and "s3cret-pass" not in detail.content.decode()


def test_viewers_read_sources_but_cannot_change_or_scan_them(
    operator_api: APIClient, viewer_api: APIClient
) -> None:
    operator_api.post("/api/v1/ingestion/sources/", SOURCE, format="json")
    assert viewer_api.get("/api/v1/ingestion/sources/").status_code == 200
    refused = viewer_api.post("/api/v1/ingestion/sources/", SOURCE | {"name": "other"}, format="json")
    assert refused.status_code == 403 and "message" in refused.json()
    assert viewer_api.post("/api/v1/ingestion/sources/utility-ftp/scan").status_code == 403
    assert viewer_api.delete("/api/v1/ingestion/sources/utility-ftp").status_code == 403


def test_bad_source_input_gets_a_clear_error(operator_api: APIClient) -> None:
    bad = operator_api.post(
        "/api/v1/ingestion/sources/",
        SOURCE | {"protocol": "sftp", "password": "", "time_zone": "Mars/Olympus", "interval_s": 5},
        format="json",
    )
    assert bad.status_code == 400
    body = bad.json()
    assert body["message"] and set(body["errors"]) >= {"time_zone", "interval_s"}


def test_scan_with_wait_imports_from_a_real_server(operator_api: APIClient, tmp_path: Any) -> None:
    server = FtpServer(tmp_path / "ftp")
    (server.home / "a.slg_v2").write_bytes(day_file("PT2001"))
    server.start()
    try:
        operator_api.post(
            "/api/v1/ingestion/sources/",
            SOURCE
            | {
                "host": "127.0.0.1",
                "port": server.port,
                "username": server.user,
                "password": server.password,
                "remote_path": "/",
                "settle_s": 0,
            },
            format="json",
        )
        answer = operator_api.post("/api/v1/ingestion/sources/utility-ftp/scan?wait=true")
    finally:
        server.stop()
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert body["ok"] and [f["status"] for f in body["files"]] == ["imported"]
    assert body["files"][0]["inserted"] == 8


def test_scan_of_an_unreachable_source_says_why(operator_api: APIClient) -> None:
    from energy_dashboard.testing import free_port

    operator_api.post(
        "/api/v1/ingestion/sources/",
        SOURCE | {"host": "127.0.0.1", "port": free_port(), "settle_s": 0},
        format="json",
    )
    RemoteSource.objects.filter(name="utility-ftp").update()
    answer = operator_api.post("/api/v1/ingestion/sources/utility-ftp/scan?wait=true")
    assert answer.status_code == 502 and "connection refused" in answer.json()["error"]
    status = operator_api.get("/api/v1/ingestion/status").json()
    (source,) = status["sources"]
    assert source["last_scan_ok"] is False and source["last_error_kind"] == "connect"


def test_upload_imports_a_small_file_and_answers_with_the_outcome(operator_api: APIClient) -> None:
    upload = SimpleUploadedFile("day.slg_v2", day_file("PT2002"), content_type="application/octet-stream")
    answer = operator_api.post("/api/v1/ingestion/upload", {"file": upload}, format="multipart")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert (body["status"], body["origin"], body["inserted"], body["errors"]) == ("imported", "upload", 8, [])


def test_an_uploaded_bad_file_is_rejected_with_its_errors_and_kept(
    operator_api: APIClient, viewer_api: APIClient
) -> None:
    lines = day_file("PT2003").split(b"\r\n")
    lines[1] = lines[1][:44] + b"Q" + lines[1][45:]  # line 2: an unknown reading type
    broken = b"\r\n".join(lines)
    upload = SimpleUploadedFile("bad.slg_v2", broken)
    body = operator_api.post("/api/v1/ingestion/upload", {"file": upload}, format="multipart").json()
    assert body["status"] == "rejected" and body["content_kept"] is True
    assert (
        body["errors"] == [{"line": 2, "field": "reading_type", "message": body["errors"][0]["message"]}]
        and "Q" in body["errors"][0]["message"]
    )
    content = viewer_api.get(f"/api/v1/ingestion/files/{body['id']}/content")
    assert content.status_code == 200 and b"".join(streamed(content)) == broken


def test_viewers_cannot_upload(viewer_api: APIClient) -> None:
    upload = SimpleUploadedFile("day.slg_v2", day_file("PT2004"))
    assert (
        viewer_api.post("/api/v1/ingestion/upload", {"file": upload}, format="multipart").status_code == 403
    )


def test_files_are_filtered_and_detail_has_the_errors(
    operator_api: APIClient, django_assert_max_num_queries: Any
) -> None:
    services.file_process(
        file_id=services.file_take(name="a.slg_v2", stream=io.BytesIO(day_file("PT2005"))).pk
    )
    services.file_process(file_id=services.file_take(name="b.slg_v2", stream=io.BytesIO(b"garbage")).pk)
    for i in range(5):
        services.file_take(name=f"q{i}.slg_v2", stream=io.BytesIO(day_file("PT2006", count=i + 1)))
    with django_assert_max_num_queries(4):
        everything = operator_api.get("/api/v1/ingestion/files/").json()
    assert everything["count"] == 7 and "errors" not in everything["results"][0]
    rejected = operator_api.get("/api/v1/ingestion/files/?status=rejected").json()["results"]
    assert [f["name"] for f in rejected] == ["b.slg_v2"]
    detail = operator_api.get(f"/api/v1/ingestion/files/{rejected[0]['id']}").json()
    assert detail["errors"] and detail["errors"][0]["line"] == 1
    since = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert operator_api.get("/api/v1/ingestion/files/", {"since": since}).json()["count"] == 0


def test_reprocess_after_a_fix(operator_api: APIClient, viewer_api: APIClient) -> None:
    row = services.file_take(name="late.slg_v2", stream=io.BytesIO(day_file("PT2007")))
    # First processed when its file's time zone was wrong for this installation.
    RemoteSource.objects.create(name="utility", host="x.invalid", time_zone="Nowhere/City")
    IngestedFile.objects.filter(pk=row.pk).update(source=RemoteSource.objects.get(name="utility"))
    failed = services.file_process(file_id=row.pk)
    assert failed.status == "failed" and "Nowhere/City" in failed.message
    RemoteSource.objects.filter(name="utility").update(time_zone="Europe/Lisbon")
    assert viewer_api.post(f"/api/v1/ingestion/files/{row.pk}/reprocess").status_code == 403
    again = operator_api.post(f"/api/v1/ingestion/files/{row.pk}/reprocess")
    assert again.status_code == 200 and again.json()["status"] == "imported"
    assert again.json()["inserted"] == 8 and again.json()["attempts"] == 2
    # Once more: nothing is doubled.
    third = operator_api.post(f"/api/v1/ingestion/files/{row.pk}/reprocess").json()
    assert (third["status"], third["inserted"], third["already_present"]) == ("imported", 0, 8)


def test_status_counts_files_by_status_and_shows_the_last_error(viewer_api: APIClient) -> None:
    services.file_process(
        file_id=services.file_take(name="ok.slg_v2", stream=io.BytesIO(day_file("PT2008"))).pk
    )
    services.file_process(file_id=services.file_take(name="bad.slg_v2", stream=io.BytesIO(b"00X")).pk)
    status = viewer_api.get("/api/v1/ingestion/status").json()
    assert status["files"]["imported"] == 1 and status["files"]["rejected"] == 1
    assert status["last_error"]["name"] == "bad.slg_v2" and status["last_error"]["message"]
    assert status["last_imported"]["name"] == "ok.slg_v2" and status["last_imported"]["inserted"] > 0


def test_the_settings_source_is_created_from_ftp_sa4cps_and_cannot_be_edited(
    settings: Any, operator_api: APIClient
) -> None:
    settings.FTP_SA4CPS_HOST = "ftp.sa4cps.example"
    settings.FTP_SA4CPS_USERNAME = "seed"
    settings.FTP_SA4CPS_PASSWORD = "from-the-environment"
    source = services.default_source_sync()
    assert source is not None and source.from_settings and source.password == ""
    assert services.source_endpoint(source).password == "from-the-environment"
    refused = operator_api.patch("/api/v1/ingestion/sources/sa4cps", {"host": "elsewhere"}, format="json")
    assert refused.status_code == 400 and "FTP_SA4CPS" in str(refused.json())


# --------------------------------------------------------------------------- where sources may connect


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 99999),
        ("port", 65536),
        ("host", "169.254.169.254"),
        ("host", "fd00:ec2::254"),
        ("host", "metadata.google.internal"),
        ("host", "10.0.0.1"),
        ("host", "192.168.1.10"),
        ("host", "0.0.0.0"),
        ("host", "127.1"),
        ("host", "ftp example.com"),
    ],
)
def test_a_source_host_and_port_are_validated(operator_api: APIClient, field: str, value: Any) -> None:
    refused = operator_api.post("/api/v1/ingestion/sources/", SOURCE | {field: value}, format="json")
    assert refused.status_code == 400, refused.json()
    assert list(refused.json()["errors"]) == [field] and refused.json()["message"].startswith(field)
    assert not RemoteSource.objects.exists()


def test_private_hosts_are_accepted_only_from_allowed_networks(
    operator_api: APIClient, settings: Any
) -> None:
    # The tests run with DEBUG on, which allows loopback (as `make run` does).
    loopback = SOURCE | {"host": "127.0.0.1"}
    assert operator_api.post("/api/v1/ingestion/sources/", loopback, format="json").status_code == 201
    settings.INGESTION_ALLOWED_NETWORKS = []
    refused = operator_api.post(
        "/api/v1/ingestion/sources/", SOURCE | {"name": "lo", "host": "::1"}, format="json"
    )
    assert refused.status_code == 400 and "INGESTION_ALLOWED_NETWORKS" in refused.json()["errors"]["host"][0]
    settings.INGESTION_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    lan = SOURCE | {"name": "lan", "host": "10.20.3.4", "port": 65535}
    assert operator_api.post("/api/v1/ingestion/sources/", lan, format="json").status_code == 201
    other = SOURCE | {"name": "other-lan", "host": "10.21.0.1"}
    assert operator_api.post("/api/v1/ingestion/sources/", other, format="json").status_code == 400
    # Editing a source is held to the same rules.
    moved = operator_api.patch("/api/v1/ingestion/sources/lan", {"host": "169.254.169.254"}, format="json")
    assert moved.status_code == 400 and list(moved.json()["errors"]) == ["host"]


def test_a_ca_file_is_read_only_from_the_secrets_folder_and_tells_nothing_of_other_files(
    operator_api: APIClient, tmp_path: Path, secrets_dir: Path
) -> None:
    (secrets_dir / "ca.pem").write_text("not really a certificate\n")
    (secrets_dir / "escape.pem").symlink_to("/etc/passwd")
    answers = {}
    for n, path in enumerate(
        [
            "/etc/passwd",
            "/etc/no-such-file-here",
            f"{secrets_dir}/../../etc/passwd",
            f"{secrets_dir}/escape.pem",
        ]
    ):
        refused = operator_api.post(
            "/api/v1/ingestion/sources/", SOURCE | {"name": f"s{n}", "ca_file": path}, format="json"
        )
        assert refused.status_code == 400 and list(refused.json()["errors"]) == ["ca_file"]
        answers[path] = refused.json()["errors"]["ca_file"]
    # The same answer whether the file outside exists or not: no oracle.
    assert len({str(a) for a in answers.values()}) == 1
    accepted = SOURCE | {"name": "ok", "protocol": "ftps", "ca_file": str(secrets_dir / "ca.pem")}
    assert operator_api.post("/api/v1/ingestion/sources/", accepted, format="json").status_code == 201


def test_a_stored_ca_file_outside_the_secrets_folder_is_refused_at_connect_time_alike(tmp_path: Path) -> None:
    errors = []
    for n, path in enumerate(["/etc/passwd", "/etc/no-such-file-here"]):
        source = RemoteSource.objects.create(
            name=f"s{n}", protocol="ftps", host="127.0.0.1", port=1, ca_file=path
        )
        result = services.source_scan(source=source, sleep=lambda s: None)
        source.refresh_from_db()
        assert not result.ok and source.last_error_kind == "tls"
        errors.append((source.last_error, source.last_error_reply))
    assert errors[0] == errors[1] and "INGESTION_SECRETS_DIR" in errors[0][0]


class Chatterbox:
    """A TCP server on loopback that greets every connection with one line of its choosing
    (a hostile FTP or SSH server's banner) and hangs up."""

    def __init__(self, line: bytes) -> None:
        self.line = line
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(self.line)
                # Hang up only after the client has, or closing with its words unread resets
                # the connection before it reads ours.
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    while conn.recv(65536):
                        pass

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


HOSTILE = "\x1b]0;pwned\x07\x1b[2J<script>alert(1)</script>\u202e" + "A" * 5000


@pytest.mark.parametrize(
    ("protocol", "line"),
    [
        ("ftp", f"421 {HOSTILE}\r\n".encode("latin-1", "replace")),
        # paramiko quotes the last of 100 lines that are not an SSH banner.
        ("sftp", f"{HOSTILE}\r\n".encode("latin-1", "replace") * 100),
    ],
)
def test_what_a_server_said_is_shown_to_operators_only_and_cut_short(
    operator_api: APIClient, viewer_api: APIClient, protocol: str, line: bytes
) -> None:
    server = Chatterbox(line)
    try:
        source = RemoteSource.objects.create(
            name="chatty", protocol=protocol, host="127.0.0.1", port=server.port, password="p", settle_s=0
        )
        result = services.source_scan(source=source, sleep=lambda s: None)
    finally:
        server.stop()
    assert not result.ok
    as_operator = operator_api.get("/api/v1/ingestion/sources/chatty").json()
    as_viewer = viewer_api.get("/api/v1/ingestion/sources/chatty").json()
    status = viewer_api.get("/api/v1/ingestion/status").json()["sources"][0]
    for seen in (
        as_viewer["last_error"],
        as_viewer["last_error_reply"],
        status["last_error"],
        as_operator["last_error"],
    ):
        assert "AAAA" not in seen and "script" not in seen and "\x1b" not in seen, seen
    assert as_viewer["last_error"] and as_viewer["last_error_reply"] == ""
    reply = as_operator["last_error_reply"]
    assert "AAAA" in reply and len(reply) <= 200
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in reply)


# --------------------------------------------------------------------------- upload size


class CountingStream:
    """A request body that counts what the server read of it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.read_bytes += len(chunk)
        return bytes(chunk)

    def readline(self, size: int = -1) -> bytes:
        line = self.stream.readline(size)
        self.read_bytes += len(line)
        return bytes(line)


@pytest.fixture
def upload_dirs(settings: Any, tmp_path: Path) -> tuple[Path, Path]:
    """Where uploads stream to while they arrive, and where kept files go."""
    temporary, kept = tmp_path / "upload-tmp", tmp_path / "kept"
    temporary.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(temporary)
    settings.INGESTION_FILES_DIR = kept
    return temporary, kept


def post_upload(user: Any, content: bytes) -> tuple[Any, CountingStream]:
    from rest_framework.test import APIRequestFactory, force_authenticate

    from ingestion.views import UploadView

    request = APIRequestFactory().post(
        "/api/v1/ingestion/upload", {"file": SimpleUploadedFile("big.slg_v2", content)}, format="multipart"
    )
    counting = CountingStream(request._stream)
    # The counting wrapper reads like the stream it wraps (WSGIRequest declares a BinaryIO).
    request._stream = counting  # type: ignore[assignment]
    force_authenticate(request, user=user)
    response = UploadView.as_view()(request)
    response.render()
    return response, counting


def test_an_upload_over_the_limit_is_refused_while_it_streams_and_nothing_is_kept(
    settings: Any, operator: Any, upload_dirs: tuple[Path, Path]
) -> None:
    from ingestion.views import UPLOAD_FRAMING_BYTES

    temporary, kept = upload_dirs
    settings.INGESTION_UPLOAD_MAX_BYTES = 10_000
    # Within the limit plus the multipart framing by its length, so only counting the bytes as
    # they stream can refuse it: the server stops after the first chunks, not at the end.
    content = b"0" * (10_000 + UPLOAD_FRAMING_BYTES - 2_000)
    answer, body = post_upload(operator, content)
    assert answer.status_code == 413, answer.content
    payload = json.loads(answer.content)
    assert payload["code"] == "too_large" and "10000" in payload["message"]
    assert body.read_bytes < len(content)
    assert not IngestedFile.objects.exists()
    assert list(temporary.iterdir()) == [] and not any(kept.rglob("*.*"))


def test_an_upload_whose_length_says_it_is_too_big_is_refused_before_it_is_read(
    settings: Any, operator: Any, upload_dirs: tuple[Path, Path]
) -> None:
    settings.INGESTION_UPLOAD_MAX_BYTES = 10_000
    answer, body = post_upload(operator, b"0" * 5_000_000)
    assert answer.status_code == 413 and json.loads(answer.content)["code"] == "too_large"
    assert body.read_bytes == 0
    assert not IngestedFile.objects.exists() and list(upload_dirs[0].iterdir()) == []


def test_an_upload_at_the_limit_is_taken_and_streams_to_disk(
    settings: Any, operator_api: APIClient, upload_dirs: tuple[Path, Path], monkeypatch: Any
) -> None:
    from django.core.files.uploadhandler import MemoryFileUploadHandler

    content = day_file("PT2010")
    settings.INGESTION_UPLOAD_MAX_BYTES = len(content)
    # Never held in memory: the memory handler is not among the upload's handlers.
    monkeypatch.setattr(MemoryFileUploadHandler, "new_file", lambda *a, **k: pytest.fail("held in memory"))
    upload = SimpleUploadedFile("day.slg_v2", content)
    answer = operator_api.post("/api/v1/ingestion/upload", {"file": upload}, format="multipart")
    assert answer.status_code == 201 and answer.json()["status"] == "imported"
    assert Path(IngestedFile.objects.get().stored_path).read_bytes() == content
    # Over the limit through the whole stack (token or session), the same JSON 413.
    upload = SimpleUploadedFile("day.slg_v2", content + b"\r\n")
    refused = operator_api.post("/api/v1/ingestion/upload", {"file": upload}, format="multipart")
    assert refused.status_code == 413 and refused.json()["code"] == "too_large"
    assert IngestedFile.objects.count() == 1


def test_a_browser_upload_over_the_limit_is_refused_too(
    settings: Any, operator: Any, upload_dirs: tuple[Path, Path]
) -> None:
    # A session's CSRF check reads the form before the view does: the limit holds there too.
    settings.INGESTION_UPLOAD_MAX_BYTES = 1_000
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(operator)
    token = "a" * 32
    browser.cookies["csrftoken"] = token
    upload = SimpleUploadedFile("day.slg_v2", b"0" * 20_000)
    refused = browser.post(
        "/api/v1/ingestion/upload", {"file": upload}, format="multipart", HTTP_X_CSRFTOKEN=token
    )
    assert refused.status_code == 413 and refused.json()["code"] == "too_large"
    assert not IngestedFile.objects.exists() and list(upload_dirs[0].iterdir()) == []
    small = SimpleUploadedFile("day.slg_v2", b"0" * 100)
    taken = browser.post(
        "/api/v1/ingestion/upload", {"file": small}, format="multipart", HTTP_X_CSRFTOKEN=token
    )
    assert taken.status_code == 201 and taken.json()["status"] == "rejected"


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interval_s", 2**40),
        ("interval_s", 31 * 86400 + 1),
        ("interval_s", 59),
        ("settle_s", 300.5),
        ("private_key", "x" * 40_000),
        ("host_key", "garbage"),
        ("host_key", ("SHA256:" + "A" * 43 + "\n") * 200),
        ("username", "meters\r\nDELE x"),
        ("password", "pw\r\nQUIT"),
        ("remote_path", "/out\nDELE /x"),
        ("patterns", "*.slg_v2 \x1b[2J"),
        ("patterns", " ".join(["*.x"] * 30)),
        ("time_zone", "Mars/Olympus"),
        ("name", "n" * 65),
    ],
)
def test_source_fields_are_bounded_to_what_a_scan_can_use(
    operator_api: APIClient, field: str, value: Any
) -> None:
    refused = operator_api.post("/api/v1/ingestion/sources/", SOURCE | {field: value}, format="json")
    assert refused.status_code == 400, refused.json()
    assert field in refused.json()["errors"] and refused.json()["message"]


def test_the_largest_accepted_values_are_accepted(operator_api: APIClient) -> None:
    body = SOURCE | {"interval_s": 31 * 86400, "settle_s": 300, "port": 65535, "name": "n" * 64}
    assert operator_api.post("/api/v1/ingestion/sources/", body, format="json").status_code == 201


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("since", "0001-01-01T00:00:00+14:00"),
        ("until", "9999-12-31T23:59:59-12:00"),
        ("since", "0001-01-01T00:00:00Z"),
        ("until", "9999-12-31T23:59:59Z"),
        ("since", "1900-01-01T00:00:00Z"),
        ("until", "2300-01-01T00:00:00Z"),
    ],
)
def test_file_filters_outside_the_products_horizon_are_a_400_naming_them(
    operator_api: APIClient, name: str, value: str
) -> None:
    services.file_take(name="a.slg_v2", stream=io.BytesIO(b"x"))
    refused = operator_api.get("/api/v1/ingestion/files/", {name: value})
    assert refused.status_code == 400, refused.content
    assert list(refused.json()["errors"]) == [name]
    inside = operator_api.get("/api/v1/ingestion/files/", {"since": "1971-01-01T00:00:00Z"})
    assert inside.status_code == 200 and inside.json()["count"] == 1
