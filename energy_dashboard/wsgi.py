"""WSGI entry point: gunicorn serves the HTTP side (docs/adr/0002)."""

import os

from django.core.wsgi import get_wsgi_application

from energy_dashboard.startup import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energy_dashboard.settings")
application = get_wsgi_application()
freeze_startup_objects()  # no 70-90 ms full collections of start-up objects (see there)
