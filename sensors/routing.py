"""WebSocket URL routes of the sensors module."""

from django.urls import path

from sensors.consumers import LiveConsumer

websocket_urlpatterns = [path("api/v1/ws", LiveConsumer.as_asgi())]
