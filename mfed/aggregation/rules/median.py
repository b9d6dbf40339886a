"""The coordinate-wise median (Yin et al., 2018): the mean of the two middle values for an even count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mfed.aggregation.robust import coordinate_median
from mfed.aggregation.rules import RobustRule
from mfed.types import State


class Median(RobustRule):
    """Coordinate-wise median; one extreme value of three or more is always left out."""

    def __call__(self, states: Sequence[State]) -> State:
        """The coordinate-wise median of ``states``."""
        return coordinate_median(states)

    def least(self) -> int | None:
        """Three: the median of two is their mean."""
        return 3


def rule(defences: Any) -> RobustRule:
    """``defences.robust=median``."""
    return Median()
