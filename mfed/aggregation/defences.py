"""Defences against bad updates, declared once and applied by any averaging strategy.

``clip_norm`` bounds each client's update of every averaged part (the encoder, a decoder) before
it is combined (the "norm bounding" of Sun et al., 2019). ``robust`` replaces the weighted mean by
a coordinate-wise trimmed mean or median (Yin et al., 2018). As Flower's clipping and DP
strategies wrap an inner strategy, these wrap every strategy's fold (:mod:`mfed.aggregation.streaming`):
a strategy never declares them itself (config group ``defences``).

On a scope that clients of several kinds (task sets) fold into, such as M-Fed's encoder, the
robust rule runs within each kind's clients first, and the kinds' results are combined by their
coordinate-wise median, each kind one vote: an order statistic over every client at once would
trim the honest clients of a minority task as if they were attackers, while a task's one vote
keeps its pull on the shared encoder whatever its number of clients. What this bounds: one
attacker is cut within its kind when the kind has at least 3 clients (median; a trimmed mean
cutting at least one from each end), and across kinds when there are at least 3 kinds (a
median of 2 is their mean).
"""

from __future__ import annotations

from dataclasses import dataclass

from mfed.aggregation.robust import ROBUST_RULES


@dataclass(frozen=True)
class Defences:
    """Clipping and a robust rule for any averaging strategy.

    Attributes:
        clip_norm: Clip each client's update of each averaged part to this L2 norm; ``None`` = off.
        robust: ``None`` (the strategy's weighted mean), ``trimmed_mean`` or ``median``
            (coordinate-wise, unweighted, within each kind of client first).
        trim_fraction: Share of clients cut from each end per coordinate by ``trimmed_mean``, in [0, 0.5).

    """

    clip_norm: float | None = None
    robust: str | None = None
    trim_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"defences.clip_norm must be > 0 or null (off), got {self.clip_norm}")
        if self.robust is not None and self.robust not in ROBUST_RULES:
            raise ValueError(f"defences.robust must be null or one of {ROBUST_RULES}, got {self.robust!r}")
        if not 0.0 <= self.trim_fraction < 0.5:
            raise ValueError(f"defences.trim_fraction must lie in [0, 0.5), got {self.trim_fraction}")
        object.__setattr__(self, "trim_fraction", float(self.trim_fraction))
        if self.clip_norm is not None:
            object.__setattr__(self, "clip_norm", float(self.clip_norm))

    @property
    def active(self) -> list[str]:
        """The config keys of the defences that are on (empty: none)."""
        return [k for k, on in (("clip_norm", self.clip_norm is not None), ("robust", self.robust is not None)) if on]

    def describe(self) -> str:
        """The defences that are on, as ``, clip_norm=1.0, robust='median', trim_fraction=0.1`` (or ``""``)."""
        text = f", clip_norm={self.clip_norm}" if self.clip_norm is not None else ""
        if self.robust is not None:
            text += f", robust={self.robust!r}, trim_fraction={self.trim_fraction}"
        return text
