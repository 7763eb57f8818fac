"""A process's startup objects leave the garbage collector's view once it is set up."""

from __future__ import annotations

import gc

from mailyard.daemon.process import settle


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_startup_objects_are_frozen_and_garbage_is_collected_first() -> None:
    kept = {"config": ["a", "b"]}
    Cycle()  # garbage in a reference cycle: collected, not frozen with the rest
    assert any(o is kept for o in gc.get_objects())
    try:
        settle()
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())  # frozen: not scanned
        gc.unfreeze()
        assert any(o is kept for o in gc.get_objects())
        assert not any(isinstance(o, Cycle) for o in gc.get_objects())  # was collected
    finally:
        gc.unfreeze()
