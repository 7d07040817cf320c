"""Energy Dashboard: the Django project that the modules stand on."""

from energy_dashboard.celery import app as celery_app

__version__ = "0.1.0"
__all__ = ["__version__", "celery_app"]
