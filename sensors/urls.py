"""API routes of the sensors module, mounted under /api/v1/."""

from energy_dashboard.api import OptionalSlashRouter
from sensors import views

router = OptionalSlashRouter()
router.register("sensors", views.SensorViewSet, basename="sensor")
router.register("rooms", views.RoomViewSet, basename="room")

urlpatterns = router.urls
