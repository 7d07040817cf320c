"""The pages' routes (the overview itself answers at `/`, see `energy_dashboard.views`)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from energy_dashboard.pages import auth, rooms

urlpatterns = [
    path("accounts/login/", auth.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("rooms/<slug:name>/", rooms.room, name="page-room"),
    path("sensors/", rooms.sensors, name="page-sensors"),
]
