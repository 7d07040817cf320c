"""Lists page with the project's limit/offset pagination: bounded, and bad values refused."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from energy_dashboard.core.api import MAX_LIMIT, MAX_OFFSET
from sensors import services

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def rooms() -> None:
    for n in range(3):
        services.room_create(name=f"room-{n}")


@pytest.mark.usefixtures("rooms")
@pytest.mark.parametrize("path", ["/api/v1/sensors/", "/api/v1/rooms/"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=100000000000000000000", "limit"),
        (f"limit={MAX_LIMIT + 1}", "limit"),
        ("limit=-1", "limit"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        (f"offset={MAX_OFFSET + 1}", "offset"),
        ("offset=100000000000000000000", "offset"),
    ],
)
def test_a_bad_page_parameter_is_400_naming_it(
    viewer_api: APIClient, path: str, query: str, field: str
) -> None:
    response = viewer_api.get(f"{path}?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid" and list(body["errors"]) == [field]
    assert body["message"].startswith(field)


@pytest.mark.usefixtures("rooms")
def test_pages_within_the_bounds(viewer_api: APIClient) -> None:
    body = viewer_api.get(f"/api/v1/rooms/?limit={MAX_LIMIT}&offset=1").json()
    assert body["count"] == 3 and [r["name"] for r in body["results"]] == ["room-1", "room-2"]
    assert len(viewer_api.get("/api/v1/rooms/?limit=2").json()["results"]) == 2
    assert viewer_api.get(f"/api/v1/rooms/?offset={MAX_OFFSET}").json()["results"] == []


def test_the_schema_documents_the_bounds(viewer_api: APIClient) -> None:
    schema = viewer_api.get("/api/v1/schema/?format=json").json()
    parameters: dict[str, Any] = {
        p["name"]: p["schema"] for p in schema["paths"]["/api/v1/rooms/"]["get"]["parameters"]
    }
    assert parameters["limit"]["minimum"] == 1 and parameters["limit"]["maximum"] == MAX_LIMIT
    assert parameters["offset"]["minimum"] == 0 and parameters["offset"]["maximum"] == MAX_OFFSET
