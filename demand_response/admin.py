"""Admin for operators: devices, invitations (accept / decline), events (cancel), the policy,
and the read-only command log. Every write goes through demand_response.services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from demand_response import services

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise
from demand_response.models import (
    AutoResponsePolicy,
    DispatchCommand,
    DREvent,
    EventDevice,
    FlexibleDevice,
    Invitation,
)


class FlexibleDeviceForm(forms.ModelForm):
    """The device form: the model's bounds and rules (its validators and clean(), run by the
    form), and the service's check of the sensor and room, so the form shows every refusal."""

    class Meta:
        model = FlexibleDevice
        fields = ["name", *FlexibleDevice.SETTINGS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns its cleaned_data
        # Only when the fields themselves are valid: otherwise their own errors say enough.
        if "sensor_id" in cleaned and "room" not in self.errors:
            try:
                services.device_check_references(
                    sensor_id=cleaned["sensor_id"],
                    room=cleaned.get("room") or "",
                    unchanged_from=self.instance if self.instance.pk else None,
                )
            except services.DRError as exc:
                for field, messages in exc.errors.items():
                    for message in messages:
                        self.add_error(field if field in self.fields else None, message)
        return cleaned


@admin.register(FlexibleDevice)
class FlexibleDeviceAdmin(admin.ModelAdmin):
    """Devices, in dispatch order."""

    form = FlexibleDeviceForm

    list_display = [
        "name",
        "sensor_id",
        "room",
        "category",
        "priority",
        "max_shed_kw",
        "max_shed_share",
        "enabled",
    ]
    list_filter = ["category", "enabled"]
    search_fields = ["name", "sensor_id", "room"]

    def get_readonly_fields(self, request: HttpRequest, obj: FlexibleDevice | None = None) -> list[str]:
        # The name is the device's key (URLs, MQTT topics): the service refuses to change it.
        return ["name"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: FlexibleDevice, form: Any, change: bool) -> None:
        # Through the service: it checks the sensor and room against the sensors module. The
        # form ran the same check; a refusal here means the sensors changed in between.
        values = {field: getattr(obj, field) for field in FlexibleDevice.SETTINGS}
        try:
            if change:
                services.device_update(device=FlexibleDevice.objects.get(pk=obj.pk), **values)
            else:
                obj.pk = services.device_create(name=obj.name, **values).pk
        except services.DRError as exc:
            # A per-request flag for message_user below, which HttpRequest does not declare.
            request._dr_refused = True  # type: ignore[attr-defined]
            self.message_user(request, str(exc), messages.ERROR)

    def message_user(
        self,
        request: HttpRequest,
        message: str | StrPromise,
        level: int | str = messages.INFO,
        extra_tags: str = "",
        fail_silently: bool = False,
    ) -> None:
        # The admin announces success after save_model whatever happened in it: not when the
        # service refused the device.
        if level == messages.SUCCESS and getattr(request, "_dr_refused", False):
            return
        super().message_user(request, message, level, extra_tags, fail_silently)

    def delete_model(self, request: HttpRequest, obj: FlexibleDevice) -> None:
        try:
            services.device_delete(device=obj)
        except services.DRError as exc:
            self.message_user(request, str(exc), messages.ERROR)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations; operators accept or decline the pending ones."""

    list_display = [
        "id",
        "programme",
        "reduction_kw",
        "start",
        "end",
        "response_deadline",
        "status",
        "answered_by",
    ]
    list_filter = ["status", "source", "programme"]
    search_fields = ["external_id", "programme", "reason"]
    readonly_fields = [f.name for f in Invitation._meta.fields]
    actions = ["accept", "decline"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def _answer(self, request: HttpRequest, queryset: QuerySet[Invitation], accept: bool) -> None:
        done = 0
        for invitation in queryset:
            try:
                # The reason names the operator: the answer's record must say who and how.
                user = request.user.get_username()
                if accept:
                    services.invitation_accept(
                        invitation=invitation,
                        answered_by=services.as_operator(request.user),
                        reason=f"accepted by operator {user} in the admin",
                    )
                else:
                    services.invitation_decline(
                        invitation=invitation,
                        answered_by=services.as_operator(request.user),
                        reason=f"declined by operator {user} in the admin",
                    )
                done += 1
            except services.DRError as exc:
                self.message_user(request, f"Invitation {invitation.pk}: {exc}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} invitation(s) {'accepted' if accept else 'declined'}.")

    @admin.action(description="Accept selected invitations", permissions=["change"])
    def accept(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        self._answer(request, queryset, accept=True)

    @admin.action(description="Decline selected invitations", permissions=["change"])
    def decline(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        self._answer(request, queryset, accept=False)


class EventDeviceInline(admin.TabularInline):
    """The event's dispatch per device."""

    model = EventDevice
    extra = 0
    can_delete = False
    readonly_fields = ["device", "planned_kw", "dispatched_kw", "status", "note", "shed_at", "restored_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DREvent)
class DREventAdmin(admin.ModelAdmin):
    """Events; operators cancel scheduled or active ones."""

    list_display = ["id", "name", "target_kw", "start", "end", "status", "dispatched_kw", "measured_kw"]
    list_filter = ["status", "programme"]
    readonly_fields = [f.name for f in DREvent._meta.fields]
    inlines = [EventDeviceInline]
    actions = ["cancel"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel selected events", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[DREvent]) -> None:
        done = 0
        for event in queryset:
            try:
                services.event_cancel(
                    event=event, cancelled_by=services.as_operator(request.user), reason="in the admin"
                )
                done += 1
            except services.DRError as exc:
                self.message_user(request, f"Event {event.pk}: {exc}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} event(s) cancelled.")


@admin.register(AutoResponsePolicy)
class AutoResponsePolicyAdmin(admin.ModelAdmin):
    """The one policy row."""

    list_display = ["enabled", "allowed_from_hour", "allowed_until_hour", "max_duration_minutes", "max_share"]
    readonly_fields = ["updated_at", "updated_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not AutoResponsePolicy.objects.exists()

    def save_model(self, request: HttpRequest, obj: AutoResponsePolicy, form: Any, change: bool) -> None:
        obj.pk = 1
        fields = {f: getattr(obj, f) for f in form.changed_data if f not in ("updated_at", "updated_by")}
        try:
            services.policy_update(updated_by=services.as_operator(request.user), **fields)
        except services.DRError as exc:
            self.message_user(request, str(exc), messages.ERROR)


@admin.register(DispatchCommand)
class DispatchCommandAdmin(admin.ModelAdmin):
    """The command log (read-only)."""

    list_display = ["sent_at", "event", "device", "action", "kw", "until", "mqtt"]
    list_filter = ["action"]
    list_select_related = ["device", "event"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
