"""Rooms, sensors, readings, analytics and the live feed."""

from django.apps import AppConfig


class SensorsConfig(AppConfig):
    """The sensors module; its tables live on the `sensors` database alias."""

    name = "sensors"
    verbose_name = "Sensors"

    def ready(self) -> None:
        from sensors import signals  # noqa: F401  (connects the event bus receivers)
