"""The coordinate-wise trimmed mean (Yin et al., 2018), as ``scipy.stats.trim_mean``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mfed.aggregation.robust import trim_count, trimmed_mean
from mfed.aggregation.rules import RobustRule
from mfed.types import State


class TrimmedMean(RobustRule):
    """The mean after cutting ``floor(trim_fraction * n)`` values from each end of every coordinate.

    Args:
        trim_fraction: Share cut from each end, in [0, 0.5) (``defences.trim_fraction``).

    """

    def __init__(self, trim_fraction: float) -> None:
        trim_count(1, trim_fraction)  # validates it
        self.trim_fraction = float(trim_fraction)

    def __call__(self, states: Sequence[State]) -> State:
        """The coordinate-wise trimmed mean of ``states``."""
        return trimmed_mean(states, self.trim_fraction)

    def least(self) -> int | None:
        """The fewest values of which ``trim_fraction`` cuts one (``None`` at 0)."""
        if self.trim_fraction == 0:
            return None
        return next(n for n in range(1, 10**6) if trim_count(n, self.trim_fraction) >= 1)


def rule(defences: Any) -> RobustRule:
    """``defences.robust=trimmed_mean`` with ``defences.trim_fraction``."""
    return TrimmedMean(defences.trim_fraction)
