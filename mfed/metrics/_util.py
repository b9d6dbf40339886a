"""Shape checks, threshold grids, counting and the non-finite guard shared by the dense metrics.

Non-finite guard: a diverged model predicts NaN or inf, and the metrics would otherwise turn
such predictions into plausible numbers (argmax of NaN logits is class 0; NaN never reaches a
threshold). Every metric therefore counts the predictions holding a NaN or an inf in a summed
``nonfinite`` state, which :meth:`~torchmetrics.Metric.merge_state` adds up across clients, and
reports NaN once that count is above 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import torch
from torch import Tensor
from torchmetrics import Metric

NONFINITE = "nonfinite"


def as_maps(preds: Tensor, target: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Bring single-channel ``(B, 1, H, W)`` maps to ``(B, H, W)`` and check the shapes agree."""
    if preds.ndim == 4 and preds.shape[1] == 1:
        preds = preds[:, 0]
    if target.ndim == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if preds.shape != target.shape:
        raise ValueError(f"{name}: preds shape {tuple(preds.shape)} does not match target shape {tuple(target.shape)}")
    return preds, target


def threshold_grid(thresholds: Sequence[float]) -> Tensor:
    """Validated thresholds in [0, 1], sorted ascending, as a float64 tensor."""
    try:
        values = sorted(float(v) for v in thresholds)
    except (TypeError, ValueError):
        values = []
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"thresholds must be a non-empty sequence of numbers in [0, 1], got {thresholds!r}")
    return torch.tensor(values, dtype=torch.float64)


def check_binary_ignore_index(ignore_index: int | None) -> None:
    """A binary map's ignore value must be None or an int other than the labels 0 and 1."""
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, Integral) or ignore_index in (0, 1)
    ):
        raise ValueError(f"ignore_index must be None or an int other than 0 and 1, got {ignore_index!r}")


def count_reaching(values: Tensor, mask: Tensor, thresholds: Tensor, strict: bool = False) -> Tensor:
    """Per row, how many masked values reach each threshold: ``(G, N)`` -> ``(G, T)`` int64.

    A value reaches t when value >= t (value > t if ``strict``), compared in the values' dtype.
    ``thresholds`` must be sorted ascending. NaN values never reach a threshold. One pass
    (binary search + bincount) replaces T separate comparisons of the whole map.
    """
    return count_reaching_masks(values, (mask,), thresholds, strict)[0]


def count_reaching_masks(
    values: Tensor, masks: Sequence[Tensor], thresholds: Tensor, strict: bool = False
) -> list[Tensor]:
    """:func:`count_reaching` of the same ``values`` under each of ``masks``, searching the thresholds once."""
    groups, num = values.shape[0], thresholds.numel()
    thr = thresholds.to(device=values.device, dtype=values.dtype)
    rank = torch.searchsorted(thr, values.contiguous(), right=not strict)  # thresholds reached, in [0, T]
    rank = rank + (num + 1) * torch.arange(groups, device=values.device)[:, None]
    not_nan = ~values.isnan()
    counts = []
    for mask in masks:
        hist = torch.bincount(rank[mask & not_nan], minlength=groups * (num + 1)).view(groups, num + 1)
        counts.append(hist[:, 1:].flip(1).cumsum(1).flip(1))
    return counts


def as_probabilities(preds: Tensor) -> Tensor:
    """Floating probabilities for comparison (half precision promoted to float32)."""
    return preds if preds.dtype == torch.float64 else preds.float()


def add_nonfinite_state(metric: Metric) -> None:
    """Register the summed ``nonfinite`` count (int64 scalar) on ``metric``."""
    metric.add_state(NONFINITE, torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")


def count_nonfinite(preds: Tensor, dim: int | None = None) -> Tensor:
    """How many predictions hold a NaN or an inf, as an int64 scalar.

    Args:
        preds: Predictions; integer tensors are always finite.
        dim: The dimension whose elements make up one prediction (e.g. the class scores or the
            3 normal components of a pixel): a prediction is non-finite when any of them is.
            ``None``: every element is one prediction.

    """
    # Fast path on CPU: a NaN or inf anywhere makes the sum non-finite; a finite sum means none
    # (a sum that overflows falls through to the exact count). Not on GPUs: it would sync per batch.
    if preds.device.type == "cpu" and bool(torch.isfinite(preds.sum())):
        return torch.zeros((), dtype=torch.int64)
    bad = ~torch.isfinite(preds)
    return (bad.any(dim=dim) if dim is not None else bad).sum()


def nan_if_nonfinite(value: Tensor, metric: Metric) -> Tensor:
    """``value``, or NaN (same shape and dtype) when ``metric`` has seen a non-finite prediction."""
    seen = getattr(metric, NONFINITE) > 0
    return torch.where(seen.to(value.device), torch.full_like(value, math.nan), value)
