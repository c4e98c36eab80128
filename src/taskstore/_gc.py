"""A worker process's garbage collector: the objects alive once it has started are not walked again.

CPython's full collection (its oldest generation) walks every object the collector tracks, and the worker's
event loop stops while it does. Most of them are modules, classes, the App's tasks and the store's own objects,
alive for the whole life of the process: a full collection of ~50,000 took 25-65 ms on a loaded 2-core machine,
a pause every task then due waited out (the tail of enqueue->start). ``gc.freeze()`` moves them to a permanent
generation that no collection walks; only what the worker allocates while it runs is collected, as before.
"""

from __future__ import annotations

import gc


def freeze_startup() -> None:
    """Collect what starting left behind, then exempt every object still alive from later collections."""
    gc.collect()
    gc.freeze()
