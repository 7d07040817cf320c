"""The product's URLs plus a plain django.contrib.auth LoginView, as the coming sign-in page will be.

Only the lockout tests use it, to show that every LoginView is covered, not only the admin's.
"""

from django.contrib.auth.views import LoginView
from django.urls import path

from energy_dashboard.urls import handler400, handler403, handler404, handler500, urlpatterns

urlpatterns = [
    path("accounts/login/", LoginView.as_view(template_name="admin/login.html"), name="login"),
    *urlpatterns,
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
