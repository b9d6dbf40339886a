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

from collections.abc import Mapping
from dataclasses import dataclass

from mfed.aggregation.robust import ROBUST_RULES, trim_count


@dataclass(frozen=True)
class Defences:
    """Clipping and a robust rule for any averaging strategy.

    Attributes:
        clip_norm: Clip each client's update of each averaged part to this L2 norm; ``None`` = off.
        robust: ``None`` (the strategy's weighted mean), ``trimmed_mean`` or ``median``
            (coordinate-wise, unweighted, within each kind of client first).
        trim_fraction: Share of clients cut from each end per coordinate by ``trimmed_mean``, in [0, 0.5).
        norm_ratio: Screening, not folding: an update of a part (the encoder, the decoders) whose
            norm is over this multiple of the median of the previous round's accepted updates of
            its kind is rejected (:class:`~mfed.federation.validation.Screen`); ``None`` = off.

    """

    clip_norm: float | None = None
    robust: str | None = None
    trim_fraction: float = 0.1
    norm_ratio: float | None = 10.0

    def __post_init__(self) -> None:
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"defences.clip_norm must be > 0 or null (off), got {self.clip_norm}")
        if self.robust is not None and self.robust not in ROBUST_RULES:
            raise ValueError(f"defences.robust must be null or one of {ROBUST_RULES}, got {self.robust!r}")
        if self.norm_ratio is not None and not self.norm_ratio > 1:
            raise ValueError(f"defences.norm_ratio must be > 1 or null (off), got {self.norm_ratio}")
        if not 0.0 <= self.trim_fraction < 0.5:
            raise ValueError(f"defences.trim_fraction must lie in [0, 0.5), got {self.trim_fraction}")
        object.__setattr__(self, "trim_fraction", float(self.trim_fraction))
        if self.clip_norm is not None:
            object.__setattr__(self, "clip_norm", float(self.clip_norm))

    def cuts(self, n: int) -> bool:
        """Whether the robust rule, over ``n`` values of a coordinate, leaves out one extreme value."""
        if self.robust == "median":
            return n >= 3
        return self.robust == "trimmed_mean" and trim_count(n, self.trim_fraction) >= 1

    def check_counts(self, kinds: Mapping[str, Mapping[str, int]]) -> list[str]:
        """What the robust rule bounds in a federation: warnings for scopes it leaves open.

        Args:
            kinds: Per scope, the clients of each kind that fold into it in a round.

        Returns:
            One line per scope where one attacker is not bounded (too few clients in its kinds
            and fewer than 3 kinds), naming the clients it needs.

        Raises:
            ValueError: The rule bounds an attacker in no scope at all: it would defend nothing.

        """
        if self.robust is None:
            return []
        open_scopes = []
        for scope, counts in kinds.items():
            if len(counts) < 3 and not any(self.cuts(n) for n in counts.values()):
                largest = max(counts.values())
                open_scopes.append(
                    f"{scope}: its {len(counts)} kind(s) send at most {largest} updates a round, which "
                    f"defences.robust={self.robust} cannot cut from ({self._needs()}), and a median across kinds "
                    "needs 3 kinds"
                )
        if open_scopes and len(open_scopes) == len(kinds):
            raise ValueError(
                f"defences.robust={self.robust} would bound one bad client in no scope; e.g. {open_scopes[0]}"
            )
        return open_scopes

    def _needs(self) -> str:
        if self.robust == "median":
            return "it needs 3 clients of a kind"
        if self.trim_fraction == 0:
            return "trim_fraction=0 cuts nobody"
        least = next(n for n in range(1, 10**6) if trim_count(n, self.trim_fraction) >= 1)
        return f"trim_fraction={self.trim_fraction} needs {least} clients of a kind"

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
