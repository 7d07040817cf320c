"""Sign-in and sign-out in the product's layout (Django's auth views)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views

from energy_dashboard.core.web import theme_of


class SignInView(auth_views.LoginView):
    """Django's sign-in, in the product's layout."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update({"title": "Sign in", "theme": theme_of(self.request), "page": {}})
        return context
