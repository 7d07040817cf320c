"""The platform's HTTP surface: service description, /health, overview, tokens, errors, docs."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from energy_dashboard.core import heartbeats
from energy_dashboard.core.redis import redis_client

pytestmark = pytest.mark.django_db(databases="__all__")


def test_service_root_describes_the_service_without_auth(client: Client) -> None:
    body = client.get("/").json()
    assert body["name"] == "Energy Dashboard"
    assert body["version"]
    assert body["api"].endswith("/api/v1/")
    assert body["docs"].endswith("/api/v1/docs/")
    assert body["health"].endswith("/health")
    assert body["websocket"].startswith("ws://") and body["websocket"].endswith("/api/v1/ws")


@override_settings(PUBLIC_WS_URL="wss://energy.example.com/api/v1/ws")
def test_service_root_announces_the_public_websocket_url(client: Client) -> None:
    assert client.get("/").json()["websocket"] == "wss://energy.example.com/api/v1/ws"


@override_settings(PUBLIC_WS_URL="same-origin", WS_PORT=8001)
def test_behind_a_proxy_the_websocket_is_on_the_same_origin(client: Client) -> None:
    assert client.get("/", HTTP_HOST="localhost:8080").json()["websocket"] == "ws://localhost:8080/api/v1/ws"


@override_settings(WS_PORT=9001)
def test_websocket_url_uses_the_websocket_port(client: Client) -> None:
    assert client.get("/", HTTP_HOST="127.0.0.1:9000").json()["websocket"] == "ws://127.0.0.1:9001/api/v1/ws"


def test_health_is_503_without_worker_and_beat(client: Client, redis_clean: Any) -> None:
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert set(body["databases"]) == {"default", "sensors", "demand_response", "ingestion"}
    assert all(check["ok"] for check in body["databases"].values())
    assert body["redis"]["ok"] is True
    assert body["workers"]["ok"] is False
    assert body["beat"]["ok"] is False


def test_health_is_200_when_every_part_reports(client: Client, redis_clean: Any) -> None:
    heartbeats.worker_beat("w1@test", 1)
    heartbeats.beat_beat(2)
    response = client.get("/health")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["workers"]["names"] == ["w1@test"]
    assert body["beat"]["last_tick_age_s"] < 5


def test_health_expires_a_silent_worker(client: Client, redis_clean: Any, settings: Any) -> None:
    settings.HEARTBEAT_MAX_AGE_S = 1
    heartbeats.worker_beat("w1@test", 1)
    heartbeats.beat_beat(2)
    time.sleep(1.2)
    assert client.get("/health").status_code == 503


def test_health_says_redis_is_down_quickly(client: Client, settings: Any, tmp_path: Any) -> None:
    redis_client.cache_clear()
    settings.REDIS_URL = f"unix://{tmp_path}/no-redis.sock"
    try:
        start = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - start
    finally:
        redis_client.cache_clear()
    assert response.status_code == 503
    body = response.json()
    assert body["redis"]["ok"] is False and "error" in body["redis"]
    assert body["workers"]["error"] == "Redis is down"
    assert elapsed < 5


def test_health_says_a_database_is_down(client: Client, redis_clean: Any, monkeypatch: Any) -> None:
    from energy_dashboard import health

    heartbeats.worker_beat("w1@test", 1)
    heartbeats.beat_beat(2)
    monkeypatch.setattr(
        health,
        "database_checks",
        lambda: {
            "default": {"ok": True},
            "sensors": {"ok": False, "error": "connection refused"},
        },
    )
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["databases"]["sensors"]["error"] == "connection refused"


@pytest.mark.parametrize(
    "path", ["/api/v1/", "/api/v1/overview", "/api/v1/schema/?format=json", "/api/v1/docs/"]
)
def test_api_requires_authentication(api: APIClient, path: str) -> None:
    accept = "text/html" if "docs" in path else "application/json"
    response = api.get(path, HTTP_ACCEPT=accept)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    if "docs" not in path:
        assert response.json()["code"] == "not_authenticated"


def test_overview_counts_per_module_and_processes(viewer_api: APIClient, redis_clean: Any) -> None:
    heartbeats.worker_beat("w1@test", 1)
    body = viewer_api.get("/api/v1/overview").json()
    assert set(body["modules"]) == {"sensors", "demand_response", "ingestion"}
    assert body["modules"]["sensors"]["rooms"] == 0
    assert body["processes"]["workers"]["names"] == ["w1@test"]
    assert body["processes"]["beat"]["ok"] is False


def test_user_without_role_may_not_read(api: APIClient, make_user: Any) -> None:
    api.force_authenticate(make_user("nobody"))
    response = api.get("/api/v1/overview")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_token_for_username_and_password(api: APIClient, operator: User) -> None:
    response = api.post(
        "/api/v1/auth/token/", {"username": "op", "password": "pw-for-tests-1"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    assert Token.objects.get(user=operator).key == token
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/overview").status_code == 200


def test_token_refused_for_wrong_password(api: APIClient, operator: User) -> None:
    response = api.post("/api/v1/auth/token/", {"username": "op", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert "Unable to log in" in response.json()["message"]


def test_malformed_json_is_a_400_json_error(api: APIClient, operator: User) -> None:
    response = api.post("/api/v1/auth/token/", data="{not json", content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "parse_error"
    assert "JSON" in body["message"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"readings": [{"sensor_id": "x", "value": NaN}]}',
        b'{"readings": [{"sensor_id": "x", "value": Infinity}]}',
        b'{"readings": [{"sensor_id": "x", "value": 1e400}]}',
        b'{"readings": [{"sensor_id": "\xff"}]}',
        b'{"readings": []',
    ],
    ids=["nan", "infinity", "overflows-to-infinity", "invalid-utf8", "truncated"],
)
def test_bodies_that_are_not_json_are_a_400_json_error(operator_api: APIClient, body: bytes) -> None:
    response = operator_api.post("/api/v1/readings", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert response.json()["message"].startswith("JSON parse error")


def test_unknown_path_is_a_json_404(client: Client) -> None:
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_openapi_schema_and_docs_use_local_assets(
    operator_api: APIClient, client: Client, operator: User
) -> None:
    schema = operator_api.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    assert "/api/v1/overview" in schema.json()["paths"]
    client.force_login(operator)
    page = client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()
    assert "/static/drf_spectacular_sidecar/" in page


def test_browsable_api_root(client: Client, operator: User) -> None:
    client.force_login(operator)
    response = client.get("/api/v1/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"overview" in response.content


def test_admin_is_served(client: Client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_form_body_django_refuses_says_which_limit(client: Client, settings: Any) -> None:
    # Outside DRF (a sign-in form), Django refuses the body itself: the answer names the limit.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post(
        "/admin/login/", data="username=" + "a" * 2000, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE (1000 bytes)" in response.json()["message"]


def test_a_form_with_too_many_fields_says_which_limit(client: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{i}=1" for i in range(20))
    response = client.post("/admin/login/", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response.json()["code"] == "too_many_fields"
