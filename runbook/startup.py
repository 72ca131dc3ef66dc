"""A process's start-up without the garbage collector's passes over what it imports.

A run of the bound scenarios imports about a thousand modules and binds every scenario
before the first one runs: objects that live as long as the process. The collector, meanwhile,
walks them again and again as they accumulate (its young generations fill every 700
allocations, and its full passes grow with what they find): about 280 passes over up to
110,000 live objects, freeing 3,300 in all, in the start-up of a run; half a second of CPU
in a run of 38 scenarios (``docs/measurements.md``). ``pause`` turns it off for the start-up;
``settle``, once the start-up is through, moves what exists then into the permanent generation
(``gc.freeze``), which later passes skip, and turns the collector back on. What start-up
leaves as cyclic garbage is kept instead of freed (a fraction of a megabyte).
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Turn the collector off for the start-up (a no-op where it is off already)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def settle() -> None:
    """The start-up is through: what exists now is kept out of later passes, and the
    collector is on again if ``pause`` turned it off."""
    global _paused
    gc.freeze()
    if _paused:
        _paused = False
        gc.enable()
