"""The Demand response module."""

from django.apps import AppConfig


class DemandResponseConfig(AppConfig):
    """The demand_response module; its tables live on the `demand_response` database alias."""

    name = "demand_response"
    verbose_name = "Demand response"
