"""No cyclic garbage collection while a big, cycle-free piece of work runs.

Translating, rendering or serialising a 10k-Ingress cluster allocates
hundreds of thousands of objects, which triggers full collections that
re-scan every long-lived object: 15-20 % of a translation, and, worse, each
full collection holds the GIL for ~250 ms, so the worker thread that renders
or writes stalls the event loop that long. The work creates no reference
cycles, so there is nothing for the collector to find; it runs again after.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic GC for the block (process-wide; reference counting goes on).

    Overlapping blocks in two threads end with the collector as it was
    before the first one began.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
