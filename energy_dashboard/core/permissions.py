"""API permissions: authenticated viewers read, operators write."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from energy_dashboard.core import roles


class ReadOrOperate(BasePermission):
    """Safe methods for viewers and operators; every other method for operators only."""

    message = "Operators may change this; viewers may only read it."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return roles.can_view(request.user)
        return roles.can_operate(request.user)


class IsOperator(BasePermission):
    """Operators only, whatever the method (commands such as scan or accept)."""

    message = "Only operators may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return roles.can_operate(request.user)


class ReadAny(BasePermission):
    """Viewers and operators, whatever the method: for queries sent as POST bodies."""

    message = "Viewers and operators may query this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return roles.can_view(request.user)
