"""Fixtures for the metric tests: a seeded generator and the client-merge check."""

from collections.abc import Callable
from itertools import pairwise

import pytest
import torch
from torch import Tensor
from torchmetrics import Metric


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _merged_equals_whole(
    make: Callable[[], Metric], *tensors: Tensor, bounds: tuple[int, ...] = (0, 2, 3, 5)
) -> Metric:
    """Update one metric per client chunk, merge their states into a fresh metric, compare with all data at once."""
    whole = make()
    whole.update(*tensors)
    merged = make()
    for a, b in pairwise(bounds):
        client = make()
        client.update(*(t[a:b] for t in tensors))
        merged.merge_state(client.metric_state)
    torch.testing.assert_close(merged.compute(), whole.compute())
    return whole


@pytest.fixture
def merged_equals_whole() -> Callable[..., Metric]:
    """``check(make, preds, target, ...)``: asserts merged client states equal the whole; returns the whole metric."""
    return _merged_equals_whole


NONFINITE_VALUES = pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"]
)


def _nan_once_nonfinite(
    make: Callable[[], Metric],
    preds: Tensor,
    target: Tensor,
    index: tuple[int, ...],
    bad: float,
    bounds: tuple[int, ...] = (0, 2, 3, 5),
) -> Metric:
    """Set ``preds[index] = bad`` (in the first client's rows); the whole set and the merged clients give NaN.

    Also checks that the clean data scores a finite number, that exactly one prediction is counted
    non-finite, and that only the first client saw it (the others still score a finite number).
    Returns the merged metric.
    """
    assert index[0] < bounds[1], "poison a row of the first client"
    clean = make()
    clean.update(preds, target)
    assert torch.isfinite(clean.compute()) and int(clean.nonfinite) == 0
    poisoned = preds.clone()
    poisoned[index] = bad
    whole = make()
    whole.update(poisoned, target)
    assert torch.isnan(whole.compute()) and int(whole.nonfinite) == 1
    merged = make()
    for k, (a, b) in enumerate(pairwise(bounds)):
        client = make()
        client.update(poisoned[a:b], target[a:b])
        assert int(client.nonfinite) == (k == 0)
        if k:
            assert torch.isfinite(client.compute())
        merged.merge_state(client.metric_state)
    assert torch.isnan(merged.compute()) and int(merged.nonfinite) == 1
    return merged


@pytest.fixture
def nan_once_nonfinite() -> Callable[..., Metric]:
    """``check(make, preds, target, index, bad)``: one non-finite prediction makes whole and merged NaN."""
    return _nan_once_nonfinite
