"""MQTT API under /api/v1/ingestion/mqtt/: brokers (by name), mappings, and the presets. Viewers
read; operators change."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from energy_dashboard.core.permissions import ReadAny, ReadOrOperate
from ingestion.mqtt.models import Broker, Mapping
from ingestion.mqtt.serializers import BrokerSerializer, MappingSerializer, MqttPresetSerializer, presets


class BrokerViewSet(viewsets.ModelViewSet[Broker]):
    """MQTT brokers, by name. Deleting one deletes its mappings; the ingester lets it go within
    seconds (what the broker keeps for its session stays there)."""

    queryset = Broker.objects.all()
    serializer_class = BrokerSerializer
    permission_classes = [ReadOrOperate]
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("broker", str, description="only this broker's mappings")]
    )
)
class MappingViewSet(viewsets.ModelViewSet[Mapping]):
    """Mappings of topic filters to readings; `?broker=<name>` lists one broker's."""

    queryset = Mapping.objects.select_related("broker")
    serializer_class = MappingSerializer
    permission_classes = [ReadOrOperate]

    def get_queryset(self) -> QuerySet[Mapping]:
        queryset = super().get_queryset()
        broker = self.request.query_params.get("broker")
        return queryset.filter(broker__name=broker) if broker else queryset


class PresetsView(APIView):
    """The built-in presets and what each fills in a new mapping."""

    permission_classes = [ReadAny]

    @extend_schema(responses=MqttPresetSerializer(many=True))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(MqttPresetSerializer(presets(), many=True).data)
