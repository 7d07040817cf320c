"""The OpenAPI schema's view of the answers every operation may give besides its own.

drf-spectacular documents an operation's successful answer only; a client generated from the
schema then has no type for the JSON error body (`core/exceptions.py`) that every 400, 401,
403, 404, 409, 413, 415 and 429 carries. This AutoSchema adds them where they can happen.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorSerializer(serializers.Serializer[Any]):
    """Every API error: one sentence for people, a stable code for programs, and for a
    validation error the details per field."""

    message = serializers.CharField(help_text="What went wrong, in one sentence.")
    code = serializers.CharField(help_text="Stable for programs: `invalid`, `not_found`, `conflict`...")
    # Only a description of the body: DRF's metaclass takes declared fields off the class, so
    # this does not shadow Serializer.errors as django-stubs' view of the class says.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(),
        required=False,
        help_text="Validation errors only: the messages per field (nested as the body is).",
    )

    class Meta:
        ref_name = "Error"


UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Each error status and why it happens; AutoSchema._error_statuses says where it can.
_ERRORS: list[tuple[str, str]] = [
    ("400", "Invalid parameters or body: `errors` names each field at fault."),
    ("401", "No credentials, or credentials that are not valid (`Authorization: Token ...`)."),
    ("403", "An operator's operation asked by a viewer, or a session's request without CSRF."),
    (
        "404",
        "Nothing by that key in the path, or a `format` the operation does not offer.",
    ),
    ("409", "The object is no longer in the state the operation needs (answered, ended...)."),
    ("413", "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (uploads: their own limit)."),
    ("415", "A body in a media type the operation does not read."),
    ("429", "Too many requests: throttled, or a login lockout (`Retry-After` says how long)."),
]


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema, with the error answers of each operation documented.

    A view says it can answer 409 with `may_conflict = True` (its unsafe operations do); the
    rest follows from the operation: 401 unless anyone may call it, 403 on writes, 413 and 415
    when it reads a body, 429 when it is throttled.
    """

    def _error_statuses(self) -> set[str]:
        view: Any = self.view
        anyone = not view.get_permissions() or all(
            isinstance(permission, AllowAny) for permission in view.get_permissions()
        )
        unsafe = self.method in UNSAFE
        statuses = {"400", "404"}
        if not anyone:
            statuses.add("401")
            if unsafe:
                statuses.add("403")
        if unsafe and getattr(view, "may_conflict", False):
            statuses.add("409")
        if self.method in ("POST", "PUT", "PATCH"):
            statuses |= {"413", "415"}
        if getattr(view, "throttle_classes", None):
            statuses.add("429")
        return statuses

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        wanted = self._error_statuses()
        for code, description in _ERRORS:
            if code not in wanted:
                continue
            if code in responses and responses[code].get("content"):
                continue  # the view documents its own body for that status
            response = self._get_response_for_code(ErrorSerializer, code, direction=direction)
            response["description"] = responses.get(code, {}).get("description") or description
            responses[code] = response
        return responses
