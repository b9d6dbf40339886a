"""Pure aggregation functions over flat states. No strategy logic, no I/O.

Floating-point tensors are averaged in float64 and cast back. Integer tensors (BatchNorm's
``num_batches_tracked`` and other counters) cannot hold a fraction: they get the weighted mean
rounded to the nearest integer, in their own dtype, so that a counter stays a plausible count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

import torch
from torch import Tensor

from mfed.types import ClientUpdate, State

WEIGHTINGS = ("examples", "uniform")


def select(state: Mapping[str, Tensor], prefixes: Iterable[str]) -> State:
    """Return the entries of ``state`` whose key starts with any of ``prefixes``."""
    prefixes = tuple(prefixes)
    return {k: v for k, v in state.items() if k.startswith(prefixes)}


def normalised_weights(weights: Sequence[float]) -> list[float]:
    """Return ``weights`` divided by their sum; all must be >= 0 with a positive sum."""
    if not weights:
        raise ValueError("cannot average zero states")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    return [w / total for w in weights]


def check_same_layout(states: Sequence[Mapping[str, Tensor]], names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the state whose keys or shapes differ from the first's."""
    ref_keys = set(states[0])
    for name, state in zip(names[1:], states[1:], strict=True):
        if set(state) != ref_keys:
            missing, extra = sorted(ref_keys - set(state)), sorted(set(state) - ref_keys)
            raise ValueError(
                f"state of {name} has different keys than {names[0]}: missing {missing[:5]}, "
                f"extra {extra[:5]} (do all clients build the same encoder/decoder?)"
            )
        for key, value in state.items():
            if value.shape != states[0][key].shape:
                raise ValueError(
                    f"{key} has shape {tuple(value.shape)} in {name} but {tuple(states[0][key].shape)} "
                    f"in {names[0]}: clients' model configs differ"
                )


def weighted_average(
    states: Sequence[Mapping[str, Tensor]], weights: Sequence[float], names: Sequence[str] | None = None
) -> State:
    """Average states key by key with the given weights.

    Args:
        states: States with identical keys and shapes.
        weights: One non-negative weight per state (normalised here).
        names: Names of the states for error messages (e.g. client ids).

    Returns:
        The averaged state; each tensor keeps its dtype (integers are rounded, see module doc).

    """
    if len(states) != len(weights):
        raise ValueError(f"got {len(states)} states but {len(weights)} weights")
    names = list(names) if names is not None else [f"state {i}" for i in range(len(states))]
    w = normalised_weights(weights)
    check_same_layout(states, names)
    averaged: State = {}
    for key, first in states[0].items():
        acc = sum(wi * s[key].to(torch.float64) for wi, s in zip(w, states, strict=True))
        assert isinstance(acc, Tensor)
        if first.is_floating_point() or first.is_complex():
            averaged[key] = acc.to(first.dtype)
        else:
            averaged[key] = torch.round(acc).to(first.dtype)
    return averaged


def update_weights(updates: Sequence[ClientUpdate], weighting: str) -> list[float]:
    """Aggregation weights of ``updates``: by number of examples, or uniform."""
    if weighting == "examples":
        return [float(u.num_examples) for u in updates]
    if weighting == "uniform":
        return [1.0] * len(updates)
    raise ValueError(f"aggregation.weighting must be one of {WEIGHTINGS}, got {weighting!r}")


class _HasTask(Protocol):
    @property
    def task(self) -> str: ...


T = TypeVar("T", bound=_HasTask)


def group_by_task(updates: Iterable[T]) -> dict[str, list[T]]:
    """Messages (updates, evaluations) grouped by task, in first-seen order."""
    groups: dict[str, list[T]] = {}
    for update in updates:
        groups.setdefault(update.task, []).append(update)
    return groups
