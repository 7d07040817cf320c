"""Rooms, sensors, readings and analytics."""

from django.apps import AppConfig


class SensorsConfig(AppConfig):
    """The sensors module; its tables live on the `sensors` database alias."""

    name = "sensors"
    verbose_name = "Sensors"
