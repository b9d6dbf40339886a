"""Defences against bad updates: update-norm clipping and coordinate-wise robust aggregation.

Pure functions over flat states, no strategy logic. Clipping bounds how far one client can move
the global model (the "norm bounding" of Sun et al., 2019, "Can you really backdoor federated
learning?"). The coordinate-wise median and trimmed mean (Yin et al., 2018, "Byzantine-robust
distributed learning: towards optimal statistical rates") ignore the largest and smallest values
of every coordinate, so a minority of arbitrarily bad clients cannot drag it away. Both robust
rules are unweighted: a client cannot buy influence by claiming more examples.

As in :mod:`mfed.aggregation.functional`, arithmetic is in float64; integer tensors (counters)
come back rounded in their own dtype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mfed.types import State


def update_norm(state: Mapping[str, Tensor], reference: Mapping[str, Tensor]) -> float:
    """L2 norm of ``state - reference`` over the floating-point tensors of ``state``.

    Raises:
        ValueError: ``reference`` lacks a key of ``state`` or holds it with another shape.

    """
    total = 0.0
    for key, value in state.items():
        if not value.is_floating_point():
            continue
        ref = reference.get(key)
        if ref is None or ref.shape != value.shape:
            raise ValueError(f"cannot measure the update of {key}: the reference state lacks it or differs in shape")
        total += float((value.to(torch.float64) - ref.to(torch.float64)).pow(2).sum())
    return math.sqrt(total)


def clip_update(state: Mapping[str, Tensor], reference: Mapping[str, Tensor], max_norm: float) -> State:
    """Scale the update ``state - reference`` down to L2 norm ``max_norm`` when it is longer.

    Integer tensors are not updates of a parameter (counters) and pass unchanged.
    """
    return clip_with_norm(state, reference, max_norm)[0]


def clip_with_norm(
    state: Mapping[str, Tensor], reference: Mapping[str, Tensor], max_norm: float
) -> tuple[State, float]:
    """:func:`clip_update`, and the update's norm before clipping (above ``max_norm``: it was clipped)."""
    if not max_norm > 0:
        raise ValueError(f"defences.clip_norm must be > 0 or null (off), got {max_norm}")
    norm = update_norm(state, reference)
    if norm <= max_norm:
        return dict(state), norm
    scale = max_norm / norm
    clipped: State = {}
    for key, value in state.items():
        if value.is_floating_point():
            ref = reference[key].to(torch.float64)
            clipped[key] = (ref + scale * (value.to(torch.float64) - ref)).to(value.dtype)
        else:
            clipped[key] = value
    return clipped, norm


def _stacked(states: Sequence[Mapping[str, Tensor]], key: str) -> Tensor:
    return torch.stack([s[key].to(torch.float64) for s in states])  # (N, *shape)


def _cast(value: Tensor, like: Tensor) -> Tensor:
    return value.to(like.dtype) if like.is_floating_point() else torch.round(value).to(like.dtype)


def trim_count(n: int, trim_fraction: float) -> int:
    """Values cut from each end of ``n`` sorted values: ``floor(trim_fraction * n)`` (as scipy's trim_mean)."""
    if not 0.0 <= trim_fraction < 0.5:
        raise ValueError(f"defences.trim_fraction must lie in [0, 0.5), got {trim_fraction}")
    return math.floor(trim_fraction * n)


def trimmed_mean(states: Sequence[Mapping[str, Tensor]], trim_fraction: float) -> State:
    """Coordinate-wise mean after dropping the ``floor(trim_fraction * n)`` largest and smallest values.

    Matches ``scipy.stats.trim_mean(values, trim_fraction, axis=0)`` per coordinate.
    """
    if not states:
        raise ValueError("cannot aggregate zero states")
    k = trim_count(len(states), trim_fraction)
    out: State = {}
    for key, first in states[0].items():
        ordered = _stacked(states, key).sort(dim=0).values
        out[key] = _cast(ordered[k : len(states) - k].mean(dim=0), first)
    return out


def coordinate_median(states: Sequence[Mapping[str, Tensor]]) -> State:
    """Coordinate-wise median (the mean of the two middle values for an even count, as numpy's)."""
    if not states:
        raise ValueError("cannot aggregate zero states")
    n = len(states)
    out: State = {}
    for key, first in states[0].items():
        ordered = _stacked(states, key).sort(dim=0).values
        middle = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        out[key] = _cast(middle, first)
    return out
