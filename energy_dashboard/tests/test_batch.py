"""A batch runs with the cyclic garbage collector paused, and it comes back on whatever happens."""

from __future__ import annotations

import gc

import pytest

from energy_dashboard.core.batch import gc_paused


def test_gc_paused_switches_the_collector_off_and_back_on() -> None:
    inside: list[bool] = []

    def failing_batch() -> None:
        with gc_paused():
            inside.append(gc.isenabled())
            with gc_paused():  # nested: left off, and not switched back on by the inner one
                inside.append(gc.isenabled())
            inside.append(gc.isenabled())
            raise RuntimeError("the batch failed")

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        failing_batch()
    assert inside == [False, False, False]
    assert gc.isenabled()


def test_gc_paused_leaves_a_collector_switched_off_elsewhere_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
