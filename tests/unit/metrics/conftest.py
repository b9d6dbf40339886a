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
