"""The OpenAPI schema says what the answers are (issue 12, point 8): a client generated from it
can read every answer, errors included, and every parameter it documents is checked."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from energy_dashboard.core.api import UTCDateTimeField
from sensors import services
from sensors.models import Room

pytestmark = pytest.mark.django_db(databases="__all__")

UNSAFE = {"post", "put", "patch", "delete"}
ERROR_REF = "#/components/schemas/Error"
# A batch of readings refused whole answers the error body with the batch's summary.
BATCH_400 = {("/api/v1/readings", "400"), ("/api/v1/sensors/{sensor_id}/data/", "400")}


@pytest.fixture
def schema(viewer_api: APIClient) -> dict[str, Any]:
    answer = viewer_api.get("/api/v1/schema/?format=json")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in UNSAFE | {"get"}
    ]


def _error_ref(response: dict[str, Any]) -> str | None:
    content = response.get("content", {}).get("application/json", {})
    ref: str | None = content.get("schema", {}).get("$ref")
    return ref


def test_every_operation_documents_its_json_error_answers(schema: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        wanted = {"400", "404"}
        if path != "/api/v1/auth/token/":
            wanted.add("401")
            if method in UNSAFE:
                wanted.add("403")
        if path.startswith("/api/v1/demand-response/") and method in UNSAFE:
            wanted.add("409")
        if method in {"post", "put", "patch"}:
            wanted |= {"413", "415"}
        for code in sorted(wanted):
            if code not in responses or "description" not in responses[code]:
                missing.append(f"{method.upper()} {path} {code}")
            elif (path, code) not in BATCH_400 and _error_ref(responses[code]) != ERROR_REF:
                missing.append(f"{method.upper()} {path} {code} body")
    assert missing == []
    assert "429" in schema["paths"]["/api/v1/auth/token/"]["post"]["responses"]
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"message", "code"}
    assert set(error["properties"]) == {"message", "code", "errors"}


def test_a_reading_batch_refused_whole_answers_as_its_400_is_documented(
    schema: dict[str, Any], operator_api: APIClient
) -> None:
    documented = schema["paths"]["/api/v1/readings"]["post"]["responses"]["400"]
    ref = documented["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    component = schema["components"]["schemas"][ref]
    services.sensor_register(sensor_id="s-1", kind="power")
    bodies: tuple[dict[str, Any], ...] = (
        {"readings": []},
        {"readings": [{"sensor_id": "s-1", "value": "x"}]},
    )
    for body in bodies:
        answer = operator_api.post("/api/v1/readings", body, format="json")
        assert answer.status_code == 400
        data = answer.json()
        assert set(component["required"]) <= set(data), (component["required"], data)
        assert set(data) <= set(component["properties"]), data


def test_room_names_are_documented_as_the_list_they_are(
    schema: dict[str, Any], viewer_api: APIClient
) -> None:
    services.room_create(name="b-room")
    services.room_create(name="a-room")
    operation = schema["paths"]["/api/v1/rooms/names/"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"type": "array", "items": {"type": "string"}}
    assert {p["name"] for p in operation.get("parameters", [])} == set()
    assert viewer_api.get("/api/v1/rooms/names/").json() == ["a-room", "b-room"]


def test_an_uploaded_files_source_is_documented_as_nullable(schema: dict[str, Any]) -> None:
    for name in ("IngestedFile", "IngestedFileDetail"):
        source = schema["components"]["schemas"][name]["properties"]["source"]
        assert source.get("nullable") is True, (name, source)


@pytest.mark.parametrize(
    "moment",
    [
        # Before 1912 Lisbon kept local mean time, 36 min 45 s behind UTC: written in the
        # building's zone it had an offset in seconds (`-00:36:45`), which RFC 3339 lacks.
        datetime(1900, 1, 1, 12, 0, tzinfo=UTC),
        datetime(2026, 7, 1, 10, 0, tzinfo=UTC),  # summer time: was written with +01:00
    ],
)
def test_stored_instants_are_written_in_utc_with_z(viewer_api: APIClient, moment: datetime) -> None:
    services.room_create(name="old-room")
    Room.objects.filter(name="old-room").update(created_at=moment, updated_at=moment)
    body = viewer_api.get("/api/v1/rooms/old-room").json()
    expected = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (body["created_at"], body["updated_at"]) == (expected, expected)
    listed = viewer_api.get("/api/v1/rooms/").json()["results"][0]
    assert listed["created_at"] == expected


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/sensors/?unassigned=maybe", "unassigned"),
        ("/api/v1/sensors/?unassigned=null", "unassigned"),
        ("/api/v1/sensors/?unassigned=FALSE", "unassigned"),
        ("/api/v1/sensors/?unassigned=1", "unassigned"),
        ("/api/v1/sensors/?unassigned=", "unassigned"),
        ("/api/v1/sensors/get/?unassigned=null", "unassigned"),
        ("/api/v1/sensors/s-1/data?start=", "start"),
        ("/api/v1/sensors/s-1/data?end=", "end"),
        ("/api/v1/sensors/s-1/data?cursor=", "cursor"),
        ("/api/v1/analytics/energy?start=", "start"),
        ("/api/v1/analytics/energy?interval=", "interval"),
        ("/api/v1/ingestion/files/?until=", "until"),
        ("/api/v1/ingestion/files/?since=", "since"),
        ("/api/v1/ingestion/files/?origin=", "origin"),
        ("/api/v1/demand-response/devices/?enabled=null", "enabled"),
        ("/api/v1/demand-response/invitations/?start_after=", "start_after"),
        ("/api/v1/demand-response/flexibility?start=", "start"),
        ("/api/v1/analytics/breakdown?period=", "period"),
    ],
)
def test_a_bad_or_empty_typed_parameter_is_a_400_naming_it(
    viewer_api: APIClient, path: str, field: str
) -> None:
    services.sensor_register(sensor_id="s-1", kind="power")
    answer = viewer_api.get(path)
    assert answer.status_code == 400, answer.content
    body = answer.json()
    assert body["code"] == "invalid" and list(body["errors"]) == [field], body
    assert body["message"].startswith(field)


@pytest.mark.parametrize("value", ["true", "false", "True", "False"])
def test_a_boolean_filter_takes_true_and_false(viewer_api: APIClient, value: str) -> None:
    services.sensor_register(sensor_id="s-1", kind="power")
    answer = viewer_api.get(f"/api/v1/sensors/?unassigned={value}")
    assert answer.status_code == 200
    assert answer.json()["count"] == (1 if value.lower() == "true" else 0)


@pytest.mark.parametrize(
    "path", ["/api/v1/rooms//", "/api/v1/demand-response/events/0.5/", "/api/v1/no-such-thing"]
)
def test_an_unknown_api_path_is_a_json_404_under_debug_too(
    viewer_api: APIClient, settings: Any, path: str
) -> None:
    settings.DEBUG = True  # as `make run` serves it
    answer = viewer_api.get(path)
    assert answer.status_code == 404
    assert answer["Content-Type"] == "application/json"
    assert answer.json()["code"] == "not_found"


def test_a_form_body_with_too_many_fields_is_a_json_400_under_debug_too(
    operator_api: APIClient, settings: Any
) -> None:
    settings.DEBUG = True
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{n}=1" for n in range(20))
    answer = operator_api.generic(
        "PATCH", "/api/v1/demand-response/policy", body, content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "too_many_fields"
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS (10)" in answer.json()["message"]


def test_an_api_path_without_its_slash_is_still_redirected(viewer_api: APIClient) -> None:
    answer = viewer_api.get("/api/v1/schema?format=json")
    assert answer.status_code == 301
    assert answer["Location"] == "/api/v1/schema/?format=json"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/demand-response/devices/", {"name": 0, "sensor_id": "s-1", "max_shed_kw": 1}, "name"),
        ("/api/v1/rooms/", {"name": "r-1", "floor": 2}, "floor"),
        ("/api/v1/sensors/", {"sensor_id": 5, "kind": "power"}, "sensor_id"),
    ],
)
def test_a_number_where_the_schema_says_string_is_a_400(
    operator_api: APIClient, path: str, body: dict[str, Any], field: str
) -> None:
    services.sensor_register(sensor_id="s-1", kind="power")
    answer = operator_api.post(path, body, format="json")
    assert answer.status_code == 400, answer.content
    assert list(answer.json()["errors"]) == [field]


def test_an_unknown_api_path_is_a_404_for_writes_with_a_session_too(operator: Any) -> None:
    client = Client(enforce_csrf_checks=True)  # a browser's session, no CSRF token sent
    client.force_login(operator)
    answer = client.patch("/api/v1/sensors/%C2%84/", {}, content_type="application/json")
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


# RFC 3339's date-time (the schema's format): an offset in hours and minutes only, or Z.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@settings(max_examples=300, deadline=None, database=None)
@given(
    moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offset=st.one_of(
        st.sampled_from([timedelta(0), -timedelta(minutes=36, seconds=45), timedelta(hours=14)]),
        st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23)),
    ),
)
def test_any_instant_is_written_as_rfc3339_utc(moment: datetime, offset: timedelta) -> None:
    aware = moment.replace(tzinfo=timezone(offset))
    written = UTCDateTimeField().to_representation(aware)
    assert written is not None and RFC3339.match(written), written
    assert datetime.fromisoformat(written) == aware


def test_a_decimal_is_a_number_both_ways(operator_api: APIClient) -> None:
    schema = operator_api.get("/api/v1/schema/?format=json").json()
    area = schema["components"]["schemas"]["Room"]["properties"]["area_m2"]
    assert area["type"] == "number"
    created = operator_api.post("/api/v1/rooms/", {"name": "r-1", "area_m2": 12.5}, format="json")
    assert created.status_code == 201 and created.json()["area_m2"] == 12.5
    # The schema says number: a string is refused in JSON (a form's fields are all text).
    refused = operator_api.patch("/api/v1/rooms/r-1", {"area_m2": "13"}, format="json")
    assert refused.status_code == 400 and list(refused.json()["errors"]) == ["area_m2"]
    form = operator_api.patch("/api/v1/rooms/r-1", {"area_m2": "13"}, format="multipart")
    assert form.status_code == 200 and form.json()["area_m2"] == 13


def test_energy_with_no_rooms_or_sensors_is_the_building_as_documented(
    viewer_api: APIClient, schema: dict[str, Any]
) -> None:
    """Issue 14: no `rooms` and no `sensors` is the whole building, and the schema says so."""
    services.sensor_register(sensor_id="m-1", kind="energy_meter")
    operation = schema["paths"]["/api/v1/analytics/energy"]["get"]
    assert "whole building" in operation["description"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert not parameters["rooms"].get("required") and not parameters["sensors"].get("required")
    answer = viewer_api.get("/api/v1/analytics/energy", HTTP_ACCEPT="application/json")
    assert answer.status_code == 200
    body = answer.json()
    assert body["scope"] == "building" and [set(s) for s in body["series"]] == [
        {"building", "total_kwh", "points"}
    ]
    documented = operation["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**documented, "components": schema["components"]})


def test_request_bodies_have_components_of_their_own(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    # A request names no read-only field, and a required text field may not be blank.
    assert "created_at" not in components["RoomRequest"]["properties"]
    assert components["RoomRequest"]["properties"]["name"]["minLength"] == 1
    assert components["RemoteSourceRequest"]["properties"]["host"]["minLength"] == 1
    body = schema["paths"]["/api/v1/rooms/"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/RoomRequest"


def test_a_multipart_body_without_a_named_part_is_a_400(operator_api: APIClient) -> None:
    services.room_create(name="r-1", floor="2")
    boundary = "11bfe68dfb51f4628d37768d64916d66"
    garbage = f"--{boundary}\r\n-6.959221139571464e+16--{boundary}--\r\n"
    content_type = f"multipart/form-data; boundary={boundary}"
    answer = operator_api.generic("PATCH", "/api/v1/rooms/r-1", garbage, content_type=content_type)
    assert answer.status_code == 400, answer.content
    assert "no part is a named field" in answer.json()["message"]
    # An empty form (the closing boundary alone) is still an empty PATCH.
    empty = operator_api.generic(
        "PATCH", "/api/v1/rooms/r-1", f"--{boundary}--\r\n", content_type=content_type
    )
    assert empty.status_code == 200 and empty.json()["floor"] == "2"
