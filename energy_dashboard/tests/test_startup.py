"""Serving processes freeze what they load at start-up, so full garbage collections do not
walk it (a 70-90 ms pause every few hundred requests otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["energy_dashboard.wsgi", "energy_dashboard.asgi"])
def test_loading_the_application_freezes_its_objects_and_every_view(module: str) -> None:
    code = (
        f"import gc, sys, {module}\n"
        "print(gc.get_freeze_count(), 'sensors.views' in sys.modules, 'ingestion.views' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE,
        env={**os.environ, "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    frozen, sensors_views, ingestion_views = done.stdout.split()
    # Django, DRF and the product's modules: well over 50,000 objects.
    assert int(frozen) > 50_000
    assert sensors_views == ingestion_views == "True"
