"""The live feed as an app, so that its receivers hear the bus in every process that sends."""

from django.apps import AppConfig


class LiveConfig(AppConfig):
    """Connects the live feed's bus receivers; the feed has no models."""

    name = "energy_dashboard.live"
    label = "live"
    verbose_name = "Live feed"

    def ready(self) -> None:
        from energy_dashboard.live import receivers  # noqa: F401  (connects them)
