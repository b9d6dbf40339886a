"""Sharding: how the training pool is split over clients, as config-selectable objects.

Each class wraps one pure function of :mod:`mfed.data.partition` behind one call signature,
``(dataset, num_clients, seed, min_per_client) -> list[index array]``, so that
``data.partition=<iid|dirichlet|quantity_skew>`` swaps schemes without touching the driver.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mfed.data.partition import (
    dirichlet_partition,
    iid_partition,
    proportional_partition,
    quantity_skew_partition,
)


class IID:
    """A random, even split."""

    def __call__(self, dataset: Any, num_clients: int, seed: int, min_per_client: int) -> list[np.ndarray]:
        """Split ``len(dataset)`` indices evenly at random."""
        return iid_partition(len(dataset), num_clients, seed, min_per_client=min_per_client)


class Dirichlet:
    """Label skew: each class spread over clients with Dir(alpha) proportions.

    The dataset must offer ``labels()`` (one class per sample; for scenes, the class covering
    the most pixels).

    Args:
        alpha: Concentration; small = skewed, large = close to IID.

    """

    def __init__(self, alpha: float = 0.5) -> None:
        if alpha <= 0:
            raise ValueError(f"data.partition.alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def __call__(self, dataset: Any, num_clients: int, seed: int, min_per_client: int) -> list[np.ndarray]:
        """Split by label with Dirichlet proportions."""
        labels = getattr(dataset, "labels", None)
        if not callable(labels):
            raise ValueError(
                f"data.partition=dirichlet needs a dataset with labels(); {type(dataset).__name__} has none: "
                "use data.partition=iid or quantity_skew"
            )
        return dirichlet_partition(np.asarray(labels()), num_clients, self.alpha, seed, min_per_client=min_per_client)


class QuantitySkew:
    """IID content, client sizes proportional to a Dir(alpha) draw.

    Args:
        alpha: Concentration; small = very unequal sizes.

    """

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"data.partition.alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def __call__(self, dataset: Any, num_clients: int, seed: int, min_per_client: int) -> list[np.ndarray]:
        """Split with skewed sizes."""
        return quantity_skew_partition(len(dataset), num_clients, self.alpha, seed, min_per_client=min_per_client)


class Proportional:
    """IID content, client sizes in a fixed ratio: FMTL-Bench's unbalanced split (1 : 2 : ... : n by default).

    Args:
        weights: One positive weight per client in client order (``federation.groups`` order);
            ``None``: ``1, 2, ..., n`` (FMTL-Bench's ``noniid: True``), so the last client holds the most.

    """

    def __init__(self, weights: list[float] | None = None) -> None:
        self.weights = None if weights is None else [float(w) for w in weights]

    def __call__(self, dataset: Any, num_clients: int, seed: int, min_per_client: int) -> list[np.ndarray]:
        """Split ``len(dataset)`` indices in the ratio of the weights."""
        weights = self.weights if self.weights is not None else [float(i + 1) for i in range(num_clients)]
        if len(weights) != num_clients:
            raise ValueError(
                f"data.partition.weights gives {len(weights)} weights for {num_clients} clients: give one per client, "
                "in federation.groups order (or null for 1, 2, ..., n)"
            )
        return proportional_partition(len(dataset), weights, seed, min_per_client=min_per_client)
