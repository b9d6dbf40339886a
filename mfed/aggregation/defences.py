"""Defences against bad updates, declared once and applied by any averaging strategy.

``clip_norm`` bounds each client's update of every averaged part (the encoder, a decoder) before
it is combined (the "norm bounding" of Sun et al., 2019): a bound stage (:class:`Clip`). ``robust``
replaces the weighted mean by an order statistic (Yin et al., 2018; :mod:`mfed.aggregation.rules`,
an open set): a combine stage (:class:`~mfed.aggregation.combine.Robust`). As Flower's clipping and
DP strategies wrap an inner strategy, these are stages of every strategy's fold
(:mod:`mfed.aggregation.fold`): a strategy never declares them itself (config group ``defences``).

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

from mfed.aggregation import rules
from mfed.aggregation.combine import Robust
from mfed.aggregation.contract import FOLDS, PARTS, UPDATES, Declaration
from mfed.aggregation.robust import clip_with_norm
from mfed.aggregation.stages import Bound, Combine, Parts, RoundContext
from mfed.types import ClientUpdate


@dataclass(frozen=True)
class Defences:
    """Clipping and a robust rule for any averaging strategy.

    Attributes:
        clip_norm: Clip each client's update of each averaged part to this L2 norm; ``None`` = off.
        robust: ``None`` (the strategy's weighted mean), or a rule of :mod:`mfed.aggregation.rules`
            (``trimmed_mean``, ``median``, or a module of the user's own): coordinate-wise,
            unweighted, within each kind of client first.
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
        if self.norm_ratio is not None and not self.norm_ratio > 1:
            raise ValueError(f"defences.norm_ratio must be > 1 or null (off), got {self.norm_ratio}")
        if not 0.0 <= self.trim_fraction < 0.5:
            raise ValueError(f"defences.trim_fraction must lie in [0, 0.5), got {self.trim_fraction}")
        object.__setattr__(self, "trim_fraction", float(self.trim_fraction))
        if self.clip_norm is not None:
            object.__setattr__(self, "clip_norm", float(self.clip_norm))
        if self.robust is not None:
            rules.load(self.robust, self)  # an unknown rule is refused now, naming the ones there are

    def bounds(self) -> list[Bound]:
        """The bound stages these defences add to a fold (clipping, when on)."""
        return [Clip(self.clip_norm)] if self.clip_norm is not None else []

    def combine(self) -> Combine | None:
        """The combine stage these defences put in the mean's place (a robust rule), or ``None``."""
        return Robust(rules.load(self.robust, self)) if self.robust is not None else None

    def cuts(self, n: int) -> bool:
        """Whether the robust rule, over ``n`` values of a coordinate, leaves out one extreme value."""
        least = rules.load(self.robust, self).least() if self.robust is not None else None
        return least is not None and n >= least

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
        least = rules.load(self.robust, self).least() if self.robust is not None else None
        if least is None:
            return f"defences.robust={self.robust} with these settings cuts nobody"
        return f"it needs {least} clients of a kind"


class Clip(Bound):
    """Clip each routed part of an update to L2 norm ``clip_norm`` (its update: the part minus what was sent).

    Each part is clipped on its own, against its scope's state (the bound of the defences, not
    differential privacy's, whose clip is joint over an update: :mod:`mfed.aggregation.privacy`).
    The round's ``clipped`` metric counts the parts that were.
    """

    def __init__(self, clip_norm: float) -> None:
        self.clip_norm = float(clip_norm)

    def declaration(self) -> Declaration:
        """Needs routed parts that a combine folds."""
        return Declaration(f"defences.clip_norm={self.clip_norm:g}", needs=frozenset({FOLDS, UPDATES, PARTS}))

    def bound(self, ctx: RoundContext, update: ClientUpdate, parts: Parts) -> Parts:
        """Every part clipped against its scope's state."""
        out: Parts = []
        for scope, part in parts:
            clipped, norm = clip_with_norm(part, ctx.state[scope], self.clip_norm)
            ctx.metrics["clipped"] = ctx.metrics.get("clipped", 0.0) + float(norm > self.clip_norm)
            out.append((scope, clipped))
        return out
