"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM (``ray job stop``, ``kill``).

While :func:`stop_on_signals` is active, either signal raises :class:`StopRequested` in the main
thread, so every clean-up step runs and the run's summary says ``interrupted``. It is not a
``KeyboardInterrupt`` on purpose: Lightning turns a ``KeyboardInterrupt`` inside ``fit`` into
``sys.exit(1)`` and ignores further Ctrl-C, while other exceptions pass through its teardown.
Inside :func:`uninterruptible` (a file being written, a wait inside Ray's compiled core) the
signal waits until the block ends, so a write completes or never starts, and no exception is
thrown through C++ (torch's writer; Ray's ``CoreWorker.wait``, which would turn it into a
``SystemError``). Ray's core installs its own handlers when it starts in this process: the
backend calls :func:`reclaim` right after, so SIGTERM (``ray job stop``) still stops the run.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_deferring = 0
_pending: int | None = None
_active = 0  # stop_on_signals blocks open in the main thread


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
    global _active
    try:
        previous = {s: signal.signal(s, _on_signal) for s in SIGNALS}
    except ValueError:  # not the main thread (e.g. a Ray Tune trial): leave signals to its owner
        yield
        return
    _active += 1
    try:
        yield
    finally:
        _active -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)


def reclaim() -> None:
    """Take SIGINT and SIGTERM back inside :func:`stop_on_signals` (after a library installed its own)."""
    if _active:
        for s in SIGNALS:
            signal.signal(s, _on_signal)


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
