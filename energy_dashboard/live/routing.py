"""The live feed's WebSocket URL routes."""

from django.urls import path

from energy_dashboard.live.consumers import LiveConsumer

websocket_urlpatterns = [path("api/v1/ws", LiveConsumer.as_asgi())]
