"""The platform's admin pages: django-axes' login attempts, with the lockout as the product counts it.

axes records one row per username, address and browser, and its own status column judges each
row alone: a username locked out by ten failures from ten addresses showed ten rows with
"9 attempts remaining". Here each row says whether its username or its address is locked out
(the failures of every row within the cool-off, as the lockout counts them) and until when
the row counts. Deleting rows lifts a lockout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from axes import admin as axes_admin
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.db.models import IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone


def _failures_within_cool_off(field: str) -> Coalesce:
    """Failures recorded for this row's username (or address) that the lockout still counts."""
    live = AccessAttempt.objects.filter(
        attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME, **{field: OuterRef(field)}
    )
    total = live.order_by().values(field).annotate(n=Sum("failures_since_start")).values("n")
    return Coalesce(Subquery(total, output_field=IntegerField()), 0)


class LockedOutFilter(admin.SimpleListFilter):
    """Rows whose username or address is locked out now."""

    title = "locked out"
    parameter_name = "locked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        locked = Q(username_failures__gte=settings.AXES_FAILURE_LIMIT) | Q(
            address_failures__gte=settings.AXES_FAILURE_LIMIT
        )
        if self.value() == "yes":
            return queryset.filter(locked)
        if self.value() == "no":
            return queryset.exclude(locked)
        return queryset


class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
    """axes' list of failed logins, with the lockout of each row's username and address."""

    list_display = [
        "attempt_time",
        "username",
        "ip_address",
        "user_agent",
        "path_info",
        "failures_since_start",
        "lockout",
        "counts_until",
    ]
    list_filter = ["attempt_time", LockedOutFilter, "path_info"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        attempts: QuerySet[Any] = (
            super()
            .get_queryset(request)
            .annotate(
                username_failures=_failures_within_cool_off("username"),
                address_failures=_failures_within_cool_off("ip_address"),
            )
        )
        return attempts

    @admin.display(description="lockout")
    def lockout(self, obj: Any) -> str:
        limit = settings.AXES_FAILURE_LIMIT
        if obj.attempt_time < timezone.now() - settings.AXES_COOLOFF_TIME:
            return "Expired"
        locked = [
            what
            for what, failures in (("username", obj.username_failures), ("address", obj.address_failures))
            if failures >= limit
        ]
        if locked:
            return "Locked out: " + " and ".join(locked)
        return f"{limit - max(obj.username_failures, obj.address_failures)} attempts left"

    @admin.display(description="counts until")
    def counts_until(self, obj: Any) -> datetime:
        until: datetime = obj.attempt_time + settings.AXES_COOLOFF_TIME
        return until


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, AccessAttemptAdmin)
