"""The admin site: Django's, plus read-only pages for models a ModelAdmin cannot serve.

Django 5.2's admin refuses to register a model with a composite primary key, and the readings
have one (ADR 0008). A module registers a page for such a model instead. The page sits at the
URL the model's change list would have (`/admin/<app>/<model>/`) and appears under its app in
the index and the sidebar, for users who may view the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.text import capfirst

PageView = Callable[[HttpRequest], HttpResponse]


class AdminSite(admin.AdminSite):
    """The project's admin site (see the module's docstring)."""

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self._pages: dict[type[Model], PageView] = {}

    def register_page(self, model: type[Model], view: PageView) -> None:
        """Serve `view` as `model`'s read-only list; it checks its own permissions."""
        self._pages[model] = view

    def get_urls(self) -> list[URLResolver | URLPattern]:
        pages: list[URLResolver | URLPattern] = [
            path(
                f"{model._meta.app_label}/{model._meta.model_name}/",
                self.admin_view(view),
                name=f"{model._meta.app_label}_{model._meta.model_name}_changelist",
            )
            for model, view in self._pages.items()
        ]
        return pages + super().get_urls()

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        app_list: list[dict[str, Any]] = super().get_app_list(request, app_label)
        by_label = {app["app_label"]: app for app in app_list}
        for model in self._pages:
            opts = model._meta
            if app_label not in (None, opts.app_label):
                continue
            if not request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}"):
                continue
            app = by_label.get(opts.app_label)
            if app is None:
                app = by_label[opts.app_label] = {
                    "name": opts.app_config.verbose_name,
                    "app_label": opts.app_label,
                    "app_url": reverse("admin:app_list", args=[opts.app_label], current_app=self.name),
                    "has_module_perms": True,
                    "models": [],
                }
                app_list.append(app)
            app["models"].append(
                {
                    "model": model,
                    "name": capfirst(opts.verbose_name_plural),
                    "object_name": opts.object_name,
                    "perms": {"add": False, "change": False, "delete": False, "view": True},
                    "admin_url": reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=self.name
                    ),
                    "add_url": None,
                    "view_only": True,
                }
            )
            app["models"].sort(key=lambda entry: entry["name"])
        app_list.sort(key=lambda app: app["name"].lower())
        return app_list


class AdminConfig(DjangoAdminConfig):
    """`django.contrib.admin` with the project's site as `admin.site`."""

    default_site = "energy_dashboard.core.admin_site.AdminSite"
