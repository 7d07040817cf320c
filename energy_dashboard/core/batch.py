"""Helpers for code that handles large batches in one go (reading batches, meter files)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run a batch with the cyclic garbage collector off, and restore it afterwards.

    A batch of 5,000 readings creates ~100,000 objects that live until it is stored (the
    parsed items, the points, the rows). With the collector's default thresholds CPython
    stops ~30 times per batch to walk them, and walks the survivors again and again: 5% of
    the request's time. They hold no reference cycles, so reference counting frees them
    anyway; whatever cycles a batch does make are collected once the collector is back on.
    Nested uses, and a collector someone else switched off, are left alone.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
