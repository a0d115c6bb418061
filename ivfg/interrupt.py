"""Ctrl-C that loses nothing: long loops finish the current step and write a checkpoint first."""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Callable, Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def finish_step_on_ctrl_c(stop: Callable[[], None], enabled: bool = True) -> Iterator[None]:
    """Inside the block, the first SIGINT calls `stop` (the loop ends after its step and checkpoints)
    instead of raising; a second one stops at once. Only in the main thread (the only one that receives
    signals), and not where `enabled` is false (several processes could stop at different steps)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        stop()
        signal.signal(signal.SIGINT, previous)
        log.warning("interrupted: finishing this step and writing a checkpoint (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
