"""Demand-response API: declarative viewsets; every write and command calls one service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from demand_response import services
from demand_response.filters import DREventFilter, FlexibleDeviceFilter, InvitationFilter
from demand_response.models import DREvent, FlexibleDevice, Invitation
from demand_response.serializers import (
    AcceptSerializer,
    CancelSerializer,
    DeclineSerializer,
    DREventSerializer,
    EventCreateSerializer,
    FlexibilityQuery,
    FlexibleDeviceSerializer,
    InvitationCreateSerializer,
    InvitationSerializer,
    PolicySerializer,
)
from energy_dashboard.core.permissions import IsOperator


class StateConflict(APIException):
    """409: the object is no longer in the state the command needs."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object changed state meanwhile."
    default_code = "conflict"


@contextmanager
def refused() -> Iterator[None]:
    """Turn the services' refusals into JSON errors: 409 for state conflicts, else 400."""
    try:
        yield
    except services.Conflict as exc:
        raise StateConflict(str(exc)) from exc
    except services.DRError as exc:
        # Named fields when the refusal is about them (a bound, an unknown sensor...).
        raise ValidationError(exc.errors or {"detail": str(exc)}) from exc


class FlexibleDeviceViewSet(viewsets.ModelViewSet[FlexibleDevice]):
    """Flexible devices: CRUD by name."""

    queryset = FlexibleDevice.objects.all()
    may_conflict = True  # writes go through refused(): 409 on a state conflict
    serializer_class = FlexibleDeviceSerializer
    filterset_class = FlexibleDeviceFilter
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def perform_create(self, serializer: BaseSerializer[FlexibleDevice]) -> None:
        with refused():
            serializer.instance = services.device_create(**serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[FlexibleDevice]) -> None:
        with refused():
            serializer.instance = services.device_update(
                device=self.get_object(), **serializer.validated_data
            )

    def perform_destroy(self, instance: FlexibleDevice) -> None:
        with refused():
            services.device_delete(device=instance)


class InvitationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet[Invitation],
):
    """Invitations from the grid: list, detail, create (integrators), accept and decline."""

    queryset = Invitation.objects.select_related("event")
    may_conflict = True  # writes go through refused(): 409 on a state conflict
    serializer_class = InvitationSerializer
    filterset_class = InvitationFilter

    @extend_schema(request=InvitationCreateSerializer, responses=InvitationSerializer)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Record an invitation (an `external_id` already known for its source returns the stored one)."""
        query = InvitationCreateSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        with refused():
            invitation = services.invitation_create(**query.validated_data)
        return Response(self._show(invitation.pk), status=status.HTTP_201_CREATED)

    def _show(self, pk: int) -> dict[str, Any]:
        return InvitationSerializer(self.get_queryset().get(pk=pk)).data

    @extend_schema(request=AcceptSerializer, responses=InvitationSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsOperator])
    def accept(self, request: Request, pk: str | None = None) -> Response:
        """Accept: commit devices (the named ones, or every free enabled one) and schedule the event."""
        invitation = self.get_object()
        body = AcceptSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with refused():
            services.invitation_accept(
                invitation=invitation,
                answered_by=services.as_operator(request.user),
                reason=body.validated_data["reason"],
                devices=body.validated_data.get("devices"),
            )
        return Response(self._show(invitation.pk))

    @extend_schema(request=DeclineSerializer, responses=InvitationSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsOperator])
    def decline(self, request: Request, pk: str | None = None) -> Response:
        """Decline, with a reason."""
        invitation = self.get_object()
        body = DeclineSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with refused():
            services.invitation_decline(
                invitation=invitation,
                answered_by=services.as_operator(request.user),
                reason=body.validated_data["reason"],
            )
        return Response(self._show(invitation.pk))


class DREventViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet[DREvent],
):
    """Events: list, detail, create manual ones, cancel, and each one's performance report."""

    serializer_class = DREventSerializer
    filterset_class = DREventFilter
    may_conflict = True  # writes go through refused(): 409 on a state conflict

    def get_queryset(self) -> QuerySet[DREvent]:
        return DREvent.objects.prefetch_related("dispatches__device")

    @extend_schema(request=EventCreateSerializer, responses=DREventSerializer)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Schedule a manual event."""
        body = EventCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with refused():
            event = services.event_create(
                created_by=services.as_operator(request.user), **body.validated_data
            )
        return Response(
            DREventSerializer(self.get_queryset().get(pk=event.pk)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=CancelSerializer, responses=DREventSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsOperator])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a scheduled or active event (an active one's devices are restored)."""
        event = self.get_object()
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with refused():
            services.event_cancel(
                event=event,
                cancelled_by=services.as_operator(request.user),
                reason=body.validated_data["reason"],
            )
        return Response(DREventSerializer(self.get_queryset().get(pk=event.pk)).data)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def performance(self, request: Request, pk: str | None = None) -> Response:
        """Baseline, actual and delivered load per interval, and the totals against the commitment."""
        event = self.get_object()
        head = {
            "event_id": event.pk,
            "status": event.status,
            "target_kw": event.target_kw,
            "start": event.start,
            "end": event.end,
            "measured_at": event.measured_at,
            "measured_kw": event.measured_kw,
        }
        if event.performance is None:
            return Response({**head, "ok": False, "reason": f"not measured yet: the event is {event.status}"})
        return Response({**head, **event.performance})

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["post"], permission_classes=[IsOperator])
    def measure(self, request: Request, pk: str | None = None) -> Response:
        """Measure a completed event again (e.g. after late meter data)."""
        event = self.get_object()
        if event.status != DREvent.Status.COMPLETED:
            raise StateConflict(f"Event {event.pk} is {event.status}; only completed events are measured.")
        with refused():
            services.event_measure(event=event)
        # DRF's stubs type an @action as the unbound function: the call is right at run time.
        return self.performance(request, pk)  # type: ignore[arg-type]


class PolicyView(APIView):
    """GET and PUT /policy: the auto-response rules."""

    # Its writes go through refused(): a services.Conflict is a 409 (core/schema.py documents it).
    may_conflict = True

    @extend_schema(responses=PolicySerializer)
    def get(self, request: Request) -> Response:
        """The policy."""
        return Response(PolicySerializer(services.policy_get()).data)

    @extend_schema(request=PolicySerializer, responses=PolicySerializer)
    def put(self, request: Request) -> Response:
        """Replace the policy's rules (PATCH for some of them)."""
        return self._write(request, partial=False)

    @extend_schema(request=PolicySerializer, responses=PolicySerializer)
    def patch(self, request: Request) -> Response:
        """Change some of the policy's rules."""
        return self._write(request, partial=True)

    def _write(self, request: Request, *, partial: bool) -> Response:
        body = PolicySerializer(services.policy_get(), data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        with refused():
            policy = services.policy_update(
                updated_by=services.as_operator(request.user), **body.validated_data
            )
        return Response(PolicySerializer(policy).data)


class FlexibilityView(APIView):
    """GET /flexibility: what each device can shed now, or over ?start=&end=, and the total."""

    @extend_schema(parameters=[FlexibilityQuery], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        """Per device: kW now (or over the window) and why zero when zero; the building total."""
        query = FlexibilityQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(
            services.flexibility_compute(
                start=query.validated_data.get("start"), end=query.validated_data.get("end")
            ).as_dict()
        )
