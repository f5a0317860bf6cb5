"""The cyclic garbage collector, tuned once a process has started serving."""

from __future__ import annotations

import gc

# Collect the youngest generation after this many net new container objects (CPython's
# default is 700). A proxied request leaves few objects behind but has many in flight, and
# a young collection walks every live young object, in-flight requests' ones included: at
# 700 the bench spent about 15 us per request in the collector, at 7,000 under 1 us.
# Garbage cycles wait a little longer to be freed; nothing else changes.
GC_YOUNG_THRESHOLD = 7000
_gc_tuned = False


def tune_gc_for_serving() -> None:
    """Once per process, when a server is up: move everything start-up built (modules,
    templates, config, the policy book) out of the cyclic collector's way with gc.freeze(),
    so full collections walk only what serving created, and collect young objects less often.
    """
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG_THRESHOLD, young), older, oldest)
