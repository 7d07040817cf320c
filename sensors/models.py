"""The registry of rooms and sensors."""

from __future__ import annotations

from django.db import models


class Room(models.Model):
    """A space of the building; its unique `name` is its key in URLs and in other modules."""

    name = models.SlugField(max_length=64, unique=True)
    display_name = models.CharField(max_length=128, blank=True)
    floor = models.CharField(max_length=32, blank=True)
    area_m2 = models.DecimalField(max_digits=9, decimal_places=2, null=True, blank=True)
    capacity = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name


class Sensor(models.Model):
    """A device that measures one or more metrics; `sensor_id` is its stable key."""

    class Kind(models.TextChoices):
        ENERGY_METER = "energy_meter", "Energy meter"
        POWER = "power", "Power"
        CO2 = "co2", "CO2"
        TEMPERATURE = "temperature", "Temperature"
        HUMIDITY = "humidity", "Humidity"
        OCCUPANCY = "occupancy", "Occupancy"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INACTIVE = "inactive", "Inactive"
        STALE = "stale", "Stale"
        FAULT = "fault", "Fault"

    sensor_id = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=128, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.SET_NULL, related_name="sensors")
    # A meter's CPE, a vendor's device id ...: unique when given.
    external_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    last_seen = models.DateTimeField(null=True, blank=True)
    expected_interval_s = models.PositiveIntegerField(default=300)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sensor_id"]
        indexes = [models.Index(fields=["room", "kind"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.name or self.sensor_id
