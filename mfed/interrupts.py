"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM (``ray job stop``, ``kill``).

While :func:`stop_on_signals` is active, either signal raises :class:`StopRequested` in the main
thread, so every clean-up step runs and the run's summary says ``interrupted``. It is not a
``KeyboardInterrupt`` on purpose: Lightning turns a ``KeyboardInterrupt`` inside ``fit`` into
``sys.exit(1)`` and ignores further Ctrl-C, while other exceptions pass through its teardown.
Inside :func:`uninterruptible` (a file being written) the signal waits until the block ends, so a
write completes or never starts, and no exception is thrown through torch's C++ writer.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_deferring = 0
_pending: int | None = None


class StopRequested(BaseException):
    """A stop signal arrived; the run ends now, keeping its last complete round.

    Attributes:
        signum: The signal.

    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _deferring:
        _pending = signum
        return
    raise StopRequested(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise :class:`StopRequested` on SIGINT and SIGTERM inside the block (main thread only, else a no-op)."""
    try:
        previous = {s: signal.signal(s, _on_signal) for s in SIGNALS}
    except ValueError:  # not the main thread (e.g. a Ray Tune trial): leave signals to its owner
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Defer a stop signal that arrives inside the block to its end."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            raise StopRequested(signum)
