"""Who takes part in a round, how many must report, and the order in which their results count."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

import numpy as np


class _FromClient(Protocol):
    @property
    def client_id(self) -> str: ...


T = TypeVar("T", bound=_FromClient)


EVALUATION = 1  # the random stream of the clients scored in an evaluation round (training's is the default)


def sample_clients(
    client_ids: Sequence[str],
    fraction: float,
    seed: int,
    round_idx: int,
    stream: int = 0,
    key: str = "federation.fraction",
) -> list[str]:
    """Clients taking part in ``round_idx``: ``max(1, round(fraction * n))`` of them, seeded.

    The result keeps the order of ``client_ids``. ``stream`` draws an independent sample from the
    same seed and round (the evaluated clients, :data:`EVALUATION`); ``key`` names the setting
    in errors.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{key} must lie in (0, 1], got {fraction}")
    n = len(client_ids)
    m = max(1, round(fraction * n))
    if m >= n:
        return list(client_ids)
    chosen = np.random.default_rng([seed, round_idx, *([stream] if stream else [])]).choice(n, size=m, replace=False)
    return [client_ids[i] for i in sorted(chosen)]


def required(min_clients: float, sampled: int) -> int:
    """Accepted updates a round of ``sampled`` clients needs.

    Args:
        min_clients: A count (a whole number from 1 to ``sampled``) or a fraction in (0, 1) of
            the sampled clients, rounded up.
        sampled: Clients sampled per round.

    Raises:
        ValueError: ``min_clients`` is neither (naming ``federation.min_clients``).

    """
    if 0 < min_clients < 1:
        return max(1, math.ceil(min_clients * sampled))
    if float(min_clients).is_integer() and 1 <= min_clients <= sampled:
        return int(min_clients)
    raise ValueError(
        f"federation.min_clients must be a count in [1, {sampled}] (the clients sampled per round) or a "
        f"fraction in (0, 1) of them, got {min_clients:g}"
    )


def in_order(outcomes: Iterable[T], order: Sequence[str]) -> Iterator[T]:
    """``outcomes`` (one per client, arriving in any order) in the order of their clients in ``order``.

    An outcome is held only until every client before its own has reported, so a consumer that
    folds results (sums of floats) gets the same order, hence bit-identical results, whatever the
    timing. Outcomes of clients not in ``order`` and notes (an outcome whose ``note`` is true: a
    ``restarted`` :class:`~mfed.types.ClientFailure`) pass at once; a client's second outcome
    follows its first. A client that never reports leaves a gap, passed over at the end.
    """
    position = {c: i for i, c in enumerate(order)}
    held: dict[int, list[T]] = {}
    released = 0
    for outcome in outcomes:
        i = position.get(outcome.client_id)
        if i is None or i < released or getattr(outcome, "note", False):
            yield outcome
            continue
        held.setdefault(i, []).append(outcome)
        while released in held:
            yield from held.pop(released)
            released += 1
    for i in sorted(held):
        yield from held[i]
