"""Admin for operators: MQTT brokers (the password typed in, never shown back) and their mappings
(filled from their preset when created with no fields), with the bad input they counted."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from ingestion.mqtt import services
from ingestion.mqtt.models import Broker, Mapping


class BrokerForm(forms.ModelForm):
    """The password is typed in but never shown; left empty, the stored one is kept."""

    password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False, max_length=256)

    class Meta:
        model = Broker
        exclude: list[str] = []

    def clean_password(self) -> str:
        return self.cleaned_data["password"] or (self.instance.password if self.instance.pk else "")


class MappingInline(admin.TabularInline):
    model = Mapping
    fields = ["name", "enabled", "topic", "preset", "messages_count", "readings_count", "malformed_count"]
    readonly_fields = ["messages_count", "readings_count", "malformed_count"]
    extra = 0
    show_change_link = True


@admin.register(Broker)
class BrokerAdmin(admin.ModelAdmin):
    """Brokers with the topics no mapping claimed."""

    form = BrokerForm
    list_display = ["name", "host", "port", "tls", "enabled", "unclaimed_count"]
    list_filter = ["enabled", "tls"]
    search_fields = ["name", "host"]
    readonly_fields = Broker.STATE_FIELDS
    inlines = [MappingInline]


class MappingForm(forms.ModelForm):
    """A new mapping takes its preset's values for the fields left empty."""

    class Meta:
        model = Mapping
        exclude: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topic"].required = False  # the preset's when left empty

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns its cleaned_data
        filled = services.mapping_fill_from_preset(cleaned, creating=self.instance.pk is None)
        for name, value in filled.items():
            if cleaned.get(name) != value:
                cleaned[name] = value
        return cleaned


@admin.register(Mapping)
class MappingAdmin(admin.ModelAdmin):
    """Mappings with their counts and the last example of each kind of bad input."""

    form = MappingForm
    list_display = [
        "name",
        "broker",
        "topic",
        "preset",
        "enabled",
        "messages_count",
        "readings_count",
        "malformed_count",
        "rejected_count",
        "unknown_sensor_count",
    ]
    list_filter = ["broker", "preset", "enabled"]
    search_fields = ["name", "topic"]
    list_select_related = ["broker"]
    readonly_fields = [*Mapping.STATE_FIELDS, "problems"]
    exclude = ["last_problems"]

    @admin.display(description="last bad input")
    def problems(self, obj: Mapping) -> str:
        if not obj.last_problems:
            return "none"
        return format_html("<pre>{}</pre>", json.dumps(obj.last_problems, indent=2, ensure_ascii=False))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [name for name in self.readonly_fields if name != "last_problems"]
