"""Who shares keys with whom: SecAgg+'s sparse neighbourhoods, and the thresholds.

SecAgg (Bonawitz et al., CCS 2017) pairs every client of a group with every other: ``n - 1``
agreed masks and ``n`` Shamir shares per client, ``O(n^2)`` work in all. SecAgg+ (Bell et al.,
CCS 2020) pairs each client with ``k = O(log n)`` neighbours only, on a random ``k``-regular graph
the server draws (public), and shares each client's secrets among its neighbours and itself.

**The graph.** A circulant graph (Harary's ``H(k, n)`` for even ``k``) on a random permutation of
the members: each member's neighbours are the ``k / 2`` before and the ``k / 2`` after it on the
shuffled ring (Flower's SecAgg+ uses the same ring on sorted ids; the shuffle is Bell et al.'s
randomisation, so no member chooses its neighbours). ``k >= n - 1`` is the complete graph: SecAgg.

**The default degree** (:func:`default_degree`): ``k = 4 ceil(log2 n)``, rounded up to even and at
most ``n - 1`` (so up to 17 members it is SecAgg). Bell et al. prove ``k = O(log n)`` suffices for
privacy against a bounded fraction of colluding clients and for correctness under a bounded
fraction of dropouts; the constant depends on those fractions and the failure probability
wanted, so it is a setting (``secure_aggregation.neighbours``), and this default a choice,
not their bound.

**The threshold** (:func:`default_threshold`): a client's secrets are shared among its ``k``
neighbours and itself, ``k + 1`` holders; any ``t`` of them recover a secret and ``t - 1`` learn
nothing. The default is a majority of the holders, ``t = floor((k + 1) / 2) + 1`` (at least 2):
a secret can be recovered with up to ``k + 1 - t`` holders gone, and no two disjoint sets of
holders can both recover it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def default_degree(n: int) -> int:
    """``min(n - 1, 4 ceil(log2 n))`` rounded up to even: every member up to 17, then ``O(log n)``."""
    if n < 2:
        return 0
    k = 4 * math.ceil(math.log2(n))
    return min(n - 1, k + k % 2)


def default_threshold(degree: int) -> int:
    """A majority of a client's ``degree + 1`` share holders (itself and its neighbours), at least 2."""
    return max(2, (degree + 1) // 2 + 1)


def neighbours(members: Sequence[str], degree: int | None, rng: random.Random) -> dict[str, tuple[str, ...]]:
    """Each member's neighbours on a circulant graph of ``degree`` over a random permutation of ``members``.

    Args:
        members: The group's distinct ids.
        degree: Neighbours per member: even, or ``>= len(members) - 1`` (every other member);
            ``None``: :func:`default_degree`.
        rng: Where the permutation comes from (the server's; the graph is public).

    Returns:
        Each member's neighbours, sorted; the relation is symmetric and irreflexive.

    Raises:
        ValueError: Repeated members, or an odd degree below ``n - 1`` (a circulant graph of odd
            degree needs an even ``n`` and a diameter edge; not offered).

    """
    ids = list(members)
    n = len(ids)
    if len(set(ids)) != n:
        raise ValueError("a group's members must be distinct")
    k = default_degree(n) if degree is None else degree
    if k < 0:
        raise ValueError(f"secure_aggregation.neighbours must be >= 1, got {degree}")
    if k >= n - 1:
        return {u: tuple(sorted(v for v in ids if v != u)) for u in ids}
    if k % 2:
        raise ValueError(
            f"secure_aggregation.neighbours={k} is odd: SecAgg+'s ring gives each client k/2 neighbours on "
            f"each side; use {k + 1} (or 'all')"
        )
    order = sorted(ids)
    rng.shuffle(order)
    position = {u: i for i, u in enumerate(order)}
    return {u: tuple(sorted(order[(position[u] + d) % n] for d in range(-k // 2, k // 2 + 1) if d != 0)) for u in ids}
