"""Test-only: the shifted clock of a `pytest --clock=...` run, in every Python process it starts.

energy_dashboard.testing puts this folder on PYTHONPATH and the shift between the tests' clock
and the real one, in nanoseconds, in ED_TEST_CLOCK_SHIFT_NS. Python imports `sitecustomize` at
start-up, before any of the process's own code, so a Celery worker, beat, `manage.py run` and
everything it starts (gunicorn, daphne) read the same "now" as the test that started them, and
tick with it; forked children (prefork workers, gunicorn workers) inherit it. Without the
variable it does nothing. Self-contained: at this point the project is not yet on sys.path.
"""

from __future__ import annotations

import os
import sys

SHIFT_VARIABLE = "ED_TEST_CLOCK_SHIFT_NS"


def _travel() -> None:
    shift = os.environ.get(SHIFT_VARIABLE)
    if not shift:
        return
    import time

    import time_machine

    time_machine.travel((time.time_ns() + int(shift)) / 1e9, tick=True).start()
    # The traveller starts ticking at its first reading: read it now, not when the process
    # first asks, or the process's clock would lag behind by its start-up time.
    time.time_ns()


def _chain() -> None:
    # Shadowing a sitecustomize that the interpreter or the machine provides would silently
    # drop what it does: run the next one on sys.path too.
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_travel()
_chain()
