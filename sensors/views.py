"""Sensors and rooms API: declarative viewsets; writes go through sensors.services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Count, QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from energy_dashboard.core.api import CSVRenderer, csv_response
from energy_dashboard.core.batch import gc_paused
from energy_dashboard.core.clock import iso_z
from energy_dashboard.core.permissions import ReadAny
from sensors import analytics, services
from sensors.analytics import RAW_COLUMNS, ROLLUP_COLUMNS, local_iso
from sensors.filters import RoomFilter, SensorFilter
from sensors.models import Room, Sensor
from sensors.serializers import (
    BreakdownQuery,
    DataQuery,
    EnergyQuery,
    EnergyReport,
    IngestRefused,
    IngestSummary,
    ReadingsBatch,
    RoomSerializer,
    RoomSeriesQuery,
    SensorSerializer,
    SeriesQuery,
)


def _room_name(data: dict[str, Any]) -> dict[str, Any]:
    if "room" in data:
        room = data.pop("room")
        data["room_name"] = room.name if room else None
    if "part_of" in data:  # the services name the parent meter by its sensor_id
        parent = data.pop("part_of")
        data["part_of"] = parent.sensor_id if parent else None
    return data


MAX_BATCH = 10_000


def _csv_wanted(request: Request) -> bool:

    return getattr(request.accepted_renderer, "format", "") == "csv"


RENDERERS = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]


class SensorDataMixin:
    if TYPE_CHECKING:  # mixed into SensorViewSet, whose GenericAPIView provides it

        def get_object(self) -> Sensor: ...

    """GET and POST /sensors/{sensor_id}/data, added to the sensor viewset."""

    @extend_schema(
        methods=["GET"],
        parameters=[SeriesQuery],
        responses=OpenApiTypes.OBJECT,
        description="Points of one metric: raw, or 15m / 1h / 1d rollups; `next` is the cursor URL. "
        "A raw range spans at most READINGS_MAX_RANGE_DAYS days; a rollup range at most "
        "ANALYTICS_MAX_RANGE_DAYS days and ANALYTICS_MAX_POINTS buckets (400 past them). "
        "`?format=csv` streams the whole range.",
    )
    @extend_schema(
        methods=["POST"],
        request=ReadingsBatch,
        responses={201: IngestSummary, 200: IngestSummary, 400: IngestRefused},
    )
    @action(detail=True, methods=["get", "post"], renderer_classes=RENDERERS)
    def data(self, request: Request, sensor_id: str | None = None) -> Any:
        """A sensor's series (GET) or a batch of its readings (POST)."""
        sensor = self.get_object()
        if request.method == "POST":
            return _ingest(request, sensor_id=sensor.sensor_id)
        query = SeriesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        metric = params.get("metric") or services.default_metric[sensor.kind]
        what = {
            "sensor": sensor,
            "metric": metric,
            "resolution": params["resolution"],
            "start": params["start"],
            "end": params["end"],
            "after": params.get("cursor"),
        }
        if _csv_wanted(request):
            # An export is the whole range (bounded by SeriesQuery), streamed from the database.
            columns = RAW_COLUMNS if params["resolution"] == "raw" else ROLLUP_COLUMNS
            return csv_response(
                f"{sensor.sensor_id}-{metric}.csv",
                columns,
                ([p[c] for c in columns] for p in services.sensor_series_rows(**what)),
            )
        points = services.sensor_series(**what, limit=params["limit"])
        following = None

        if len(points) == params["limit"]:
            following = replace_query_param(request.build_absolute_uri(), "cursor", points[-1]["timestamp"])
        return Response(
            {
                "sensor_id": sensor.sensor_id,
                "metric": metric,
                "resolution": params["resolution"],
                "start": iso_z(params["start"]),
                "end": iso_z(params["end"]),
                "next": following,
                "points": points,
            }
        )


def _ingest(request: Request, *, sensor_id: str | None = None) -> Response:
    with gc_paused():  # the parsed batch too: see gc_paused
        return _store(request, sensor_id)


def _store(request: Request, sensor_id: str | None) -> Response:
    body: Any = request.data  # parsed JSON of any shape, checked below
    if isinstance(body, list):  # a bare list of readings is accepted too
        body = {"readings": body}
    # The shape only: readings_ingest checks each item and answers per item. (A DRF ListField
    # of JSONFields would cost more than storing the batch.)
    items = body.get("readings") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ValidationError({"readings": ["A non-empty list of readings is required."]})
    if len(items) > MAX_BATCH:
        raise ValidationError({"readings": [f"At most {MAX_BATCH} readings per request; send several."]})
    result = services.readings_ingest(readings=items, source="api", sensor_id=sensor_id)
    if result["accepted"]:
        return Response(result, status=status.HTTP_201_CREATED)
    if result["rejected"]:
        return Response(
            {
                "message": f"No reading accepted: {result['rejected'][0]['reason']} (item "
                f"{result['rejected'][0]['index']}).",
                "code": "invalid",
                **result,
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    # Everything was already stored: a retried batch is not an error.
    return Response(result, status=status.HTTP_200_OK)


class ReadingsView(APIView):
    """POST /readings: readings of many sensors at once."""

    @extend_schema(
        request=ReadingsBatch, responses={201: IngestSummary, 200: IngestSummary, 400: IngestRefused}
    )
    def post(self, request: Request) -> Response:
        """Store a batch: 201 when anything was accepted, 200 when all was already stored,
        400 when nothing was accepted (with each item's reason)."""
        return _ingest(request)


class AnalyticsSummaryView(APIView):
    """Current power, energy today / this week / this month, top consumers, comfort."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Any:
        if isinstance(request.accepted_renderer, JSONRenderer):
            # Dashboards poll this: at most ANALYTICS_SUMMARY_MAX_AGE seconds old (see there).
            return HttpResponse(services.analytics_summary_json(), content_type="application/json")
        return Response(services.analytics_summary())


class AnalyticsComparisonView(APIView):
    """Energy so far today, this week and this month against yesterday, last week and the same
    month a year ago, each up to the same local time (the building's time zone)."""

    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        description="The building's energy (its top-level meters': a sub-meter's energy is in its "
        "parent's) so far today, this week and this month, and over the same span of yesterday, last "
        "week and this month a year ago, cut at the same local time of day; with each previous "
        "period's whole total. Local times carry their offset; a daylight-saving day is 23 or 25 hours.",
    )
    def get(self, request: Request) -> Response:
        return Response(services.energy_comparison())


class AnalyticsBreakdownView(APIView):
    """Where the energy of today, this week or this month went: meter hierarchies with each
    level's unmetered remainder, rooms and kinds, a nested meter counted once."""

    @extend_schema(
        parameters=[BreakdownQuery],
        responses=OpenApiTypes.OBJECT,
        description="Each meter hierarchy (a meter and its sub-meters, `part_of`) with every level's "
        "kWh and unmetered remainder, the largest standalone meters, each room's share (net of "
        "sub-meters, so the rooms add up to `total_kwh`) and the top-level meters' kWh per kind.",
    )
    def get(self, request: Request) -> Response:
        query = BreakdownQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(services.energy_breakdown(query.validated_data["period"]))


class AnalyticsEnergyView(APIView):
    """kWh per interval for rooms or sensors (none named: the whole building), in the building's
    time zone."""

    renderer_classes = RENDERERS

    @extend_schema(
        parameters=[EnergyQuery],
        responses={(200, "application/json"): EnergyReport, (200, "text/csv"): OpenApiTypes.STR},
        description="kWh per interval of each room and sensor named, or of the whole building (every "
        "sensor's energy, those in no room too: `scope` is `building`) when none is. At most "
        "ANALYTICS_MAX_POINTS points (buckets x series) over ANALYTICS_MAX_RANGE_DAYS days.",
    )
    def get(self, request: Request) -> Any:
        query = EnergyQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        what = {
            "rooms": params["rooms"],
            "sensor_ids": params["sensors"],
            "start": params["start"],
            "end": params["end"],
            "interval": params["interval"],
        }
        if _csv_wanted(request):
            return csv_response(
                "energy.csv",
                ["kind", "key", "start", "energy_kwh"],
                (
                    [kind, key, local_iso(at), kwh]
                    for kind, key, at, kwh in services.energy_rows(**what, stream=True)
                ),
            )
        if isinstance(request.accepted_renderer, JSONRenderer):
            # JSON clients (dashboards) get the cached answer as it is.
            return HttpResponse(services.energy_report_json(**what), content_type="application/json")
        return Response(services.energy_report(**what))


class DataQueryView(APIView):
    """POST /data/query: readings or aggregates of chosen sensors, rooms and metrics."""

    renderer_classes = RENDERERS
    # A query is a read, whatever its method.
    permission_classes = [ReadAny]

    @extend_schema(
        request=DataQuery,
        responses=OpenApiTypes.OBJECT,
        description="At most `limit` rows; at most ANALYTICS_MAX_SERIES sensors and rooms; raw: a range "
        "of at most READINGS_MAX_RANGE_DAYS days; aggregates: at most ANALYTICS_MAX_RANGE_DAYS days "
        "and ANALYTICS_MAX_POINTS buckets (400 past them). `?format=csv` streams the rows.",
    )
    def post(self, request: Request) -> Any:
        query = DataQuery(data=request.data)
        query.is_valid(raise_exception=True)
        p = query.validated_data
        rows = services.data_query(
            sensor_ids=p["sensors"],
            rooms=p["rooms"],
            metrics=p["metrics"],
            start=p["start"],
            end=p["end"],
            aggregation=p["aggregation"],
            interval=p["interval"],
            limit=p["limit"],
        )
        if _csv_wanted(request):
            header = ["sensor_id", "room", "metric", "timestamp", "value"]
            return csv_response("query.csv", header, ([row[c] for c in header] for row in rows))
        results = list(rows)
        return Response({"count": len(results), "truncated": len(results) == p["limit"], "results": results})


class SensorViewSet(SensorDataMixin, viewsets.ModelViewSet[Sensor]):
    """The sensor registry; `/sensors/get` is the seed's alias of the list."""

    queryset = Sensor.objects.select_related("room")
    serializer_class = SensorSerializer
    filterset_class = SensorFilter
    lookup_field = "sensor_id"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def perform_create(self, serializer: drf_serializers.BaseSerializer[Sensor]) -> None:
        data = _room_name(dict(serializer.validated_data))
        serializer.instance = services.sensor_register(**data)

    def perform_update(self, serializer: drf_serializers.BaseSerializer[Sensor]) -> None:
        data = _room_name(dict(serializer.validated_data))
        assert serializer.instance is not None  # an update has its object
        serializer.instance = services.sensor_update(sensor=serializer.instance, **data)

    def perform_destroy(self, instance: Sensor) -> None:
        services.sensor_delete(sensor=instance)

    @extend_schema(operation_id="sensors_get_alias", responses=SensorSerializer(many=True))
    @action(detail=False, methods=["get"], url_path="get")
    def get_alias(self, request: Request) -> Response:
        """The seed's `GET /sensors/get`: the same list, with the same filters."""
        return self.list(request)


class RoomViewSet(viewsets.ModelViewSet[Room]):
    """Rooms by name."""

    serializer_class = RoomSerializer
    filterset_class = RoomFilter
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def get_queryset(self) -> QuerySet[Room]:
        # Ordered here: Meta.ordering does not apply to a GROUP BY query, and offset pages of an
        # unordered list repeat and skip rooms.
        return Room.objects.annotate(sensor_count=Count("sensors")).order_by("name")

    def perform_create(self, serializer: drf_serializers.BaseSerializer[Room]) -> None:
        room = services.room_create(**serializer.validated_data)
        serializer.instance = self.get_queryset().get(pk=room.pk)

    def perform_update(self, serializer: drf_serializers.BaseSerializer[Room]) -> None:
        assert serializer.instance is not None  # an update has its object
        services.room_update(room=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance: Room) -> None:
        services.room_delete(room=instance)

    @extend_schema(responses=drf_serializers.ListSerializer(child=drf_serializers.CharField()))
    # One list of names, neither paged nor filtered (the schema said it was a page of rooms).
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def names(self, request: Request) -> Response:
        """Every room's name."""
        return Response(services.room_names())

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A room with its latest 5-minute metrics and each sensor's latest reading."""
        room = self.get_object()
        return Response({**self.get_serializer(room).data, "latest": services.room_latest(room)})


class RoomSeriesView(APIView):
    """GET /rooms/{name}/series: a room's points per metric at a resolution, for its charts."""

    renderer_classes = RENDERERS

    @extend_schema(
        parameters=[RoomSeriesQuery],
        responses=OpenApiTypes.OBJECT,
        description="A room's points per metric in [start, end), timestamps in the building's time "
        "zone with their offset. `raw`: each sensor's readings (a series per sensor and metric); "
        "`5m`: the room's 5-minute room metrics; `15m`, `1h`, `1d` (local days, 23 or 25 hours on "
        "daylight-saving days): its sensors' rollups combined (energy and power summed, climate "
        "averaged); `auto` (default) chooses one to fit the range and says which in `resolution`. "
        f"At most {analytics.ROOM_SERIES_MAX_POINTS} points in all (ROOM_SERIES_MAX_POINTS; "
        "400 past it); raw ranges at most READINGS_MAX_RANGE_DAYS days. `?format=csv` gives the "
        "same points as rows (metric, sensor_id, timestamp, value).",
    )
    def get(self, request: Request, name: str) -> Any:
        room = Room.objects.filter(name=name).first()
        if room is None:
            raise NotFound(f"No room named {name!r}.")
        query = RoomSeriesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            answer = services.room_series(
                room=room,
                metrics=params["metrics"],
                start=params["start"],
                end=params["end"],
                resolution=params["resolution"],
            )
        except analytics.TooManyPoints as exc:
            raise ValidationError({"resolution": [str(exc)]}) from None
        if _csv_wanted(request):
            return csv_response(
                f"{room.name}-{answer['resolution']}.csv",
                ["metric", "sensor_id", "timestamp", "value"],
                (
                    [s["metric"], s["sensor_id"] or "", at, value]
                    for s in answer["series"]
                    for at, value in s["points"]
                ),
            )
        return Response(answer)
