"""The two roles: operators change things, viewers read them."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission, PermissionsMixin
from django.db import transaction

OPERATORS = "operators"
VIEWERS = "viewers"

# The apps whose models the roles cover; beat's schedules so operators can retime jobs.
PRODUCT_APPS = ("sensors", "demand_response", "ingestion", "django_celery_beat")
# Apps only operators see: django-axes' login attempts and lockouts (usernames and addresses),
# which operators lift by deleting the attempts.
OPERATOR_APPS = ("axes",)


def sync_roles() -> None:
    """Create both groups: operators change product models and lockouts, viewers read (idempotent)."""
    with transaction.atomic(using="default"):
        operators, _ = Group.objects.get_or_create(name=OPERATORS)
        viewers, _ = Group.objects.get_or_create(name=VIEWERS)
        product = Permission.objects.filter(content_type__app_label__in=PRODUCT_APPS)
        operators.permissions.add(*product)
        operators.permissions.add(*Permission.objects.filter(content_type__app_label__in=OPERATOR_APPS))
        viewers.permissions.add(*product.filter(codename__startswith="view_"))


def _in_group(user: AbstractBaseUser | AnonymousUser, name: str) -> bool:
    # Groups belong to PermissionsMixin, which the project's User model (Django's) has.
    if not user.is_authenticated or not isinstance(user, PermissionsMixin):
        return False
    # Cached on the user object: one query per request however often it is asked.
    names: set[str] | None = getattr(user, "_ed_groups", None)
    if names is None:
        names = set(user.groups.values_list("name", flat=True))
        # A per-request cache that Django's User does not declare.
        user._ed_groups = names  # type: ignore[attr-defined]
    return name in names


def can_operate(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Operators and superusers may change things."""
    return bool(getattr(user, "is_superuser", False)) or _in_group(user, OPERATORS)


def can_view(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Viewers, operators and superusers may read."""
    return can_operate(user) or _in_group(user, VIEWERS)
