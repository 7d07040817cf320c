"""ASGI entry point: HTTP to Django, WebSockets to the live feed (energy_dashboard/live)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energy_dashboard.settings")
# Django must be set up before the consumers (and the auth models they use) are imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from energy_dashboard.live.routing import websocket_urlpatterns  # noqa: E402
from energy_dashboard.live.transport import websocket_auth_stack  # noqa: E402
from energy_dashboard.startup import freeze_startup_objects  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_auth_stack(URLRouter(websocket_urlpatterns)),
    }
)
freeze_startup_objects()  # no long full collections while fanning out (see there)
