"""WSGI entry point: gunicorn serves the HTTP side (docs/adr/0002)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energy_dashboard.settings")
application = get_wsgi_application()
