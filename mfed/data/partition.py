"""Partitioning the training pool over clients: pure numpy functions, deterministic by seed.

========================= ====================================================================
scheme                    what differs between clients
========================= ====================================================================
``iid_partition``         nothing: a random permutation split as evenly as possible
``dirichlet_partition``   label mix: each class spread over clients with Dir(alpha) shares
                          (Hsu et al., 2019); small alpha = few classes per client
``quantity_skew_partition`` size: shares ~ Dir(alpha), content IID
``train_val_split``       a client's own train / validation split
========================= ====================================================================

Every function returns sorted int64 index arrays; every sample is assigned exactly once.
"""

from __future__ import annotations

import numpy as np


def _check_counts(num_samples: int, num_clients: int, min_per_client: int) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if min_per_client < 0:
        raise ValueError(f"min_per_client must be >= 0, got {min_per_client}")
    if num_samples < num_clients * min_per_client:
        raise ValueError(
            f"num_samples={num_samples} cannot give {num_clients} clients at least {min_per_client} "
            "examples each: lower the number of clients or raise the data size"
        )


def _check_alpha(alpha: float) -> None:
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")


def iid_partition(num_samples: int, num_clients: int, seed: int, min_per_client: int = 1) -> list[np.ndarray]:
    """Split ``range(num_samples)`` at random into ``num_clients`` parts whose sizes differ by <= 1."""
    _check_counts(num_samples, num_clients, min_per_client)
    perm = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, num_clients)]


def dirichlet_partition(
    labels: np.ndarray, num_clients: int, alpha: float, seed: int, min_per_client: int = 1, max_retries: int = 100
) -> list[np.ndarray]:
    """Label-skewed split: each class's indices divided over clients with Dir(alpha) proportions.

    Draws again (from the same seeded generator) until every client holds ``min_per_client``.

    Args:
        labels: ``(N,)`` integer class of each sample.
        num_clients: Number of clients.
        alpha: Dirichlet concentration (> 0).
        seed: Seed.
        min_per_client: Smallest acceptable client.
        max_retries: Draws before giving up.

    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    _check_alpha(alpha)
    _check_counts(len(labels), num_clients, min_per_client)
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    for _ in range(max_retries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for indices in by_class:
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(indices)).astype(int)
            for client, chunk in enumerate(np.split(indices, cuts)):
                parts[client].append(chunk)
        shards = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(s) for s in shards) >= min_per_client:
            return shards
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) split of {len(labels)} samples gave all {num_clients} clients "
        f"{min_per_client} examples in {max_retries} draws: raise alpha, lower the number of clients "
        "or raise the data size"
    )


def quantity_skew_partition(
    num_samples: int, num_clients: int, alpha: float, seed: int, min_per_client: int = 1
) -> list[np.ndarray]:
    """IID content with client sizes ``min_per_client + Dir(alpha)`` shares of the rest."""
    _check_alpha(alpha)
    _check_counts(num_samples, num_clients, min_per_client)
    rng = np.random.default_rng(seed)
    spare = num_samples - num_clients * min_per_client
    sizes = np.full(num_clients, min_per_client) + rng.multinomial(spare, rng.dirichlet(np.full(num_clients, alpha)))
    perm = rng.permutation(num_samples)
    return [np.sort(part).astype(np.int64) for part in np.split(perm, np.cumsum(sizes)[:-1])]


def train_val_split(
    indices: np.ndarray, val_fraction: float, seed: int, min_train: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Split one client's indices into sorted (train, val) at random.

    Validation gets ``round(val_fraction * n)`` samples, at least one when ``val_fraction > 0``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    indices = np.asarray(indices, dtype=np.int64)
    n_val = max(1, round(val_fraction * len(indices))) if val_fraction > 0 else 0
    if len(indices) - n_val < min_train:
        raise ValueError(
            f"{len(indices)} examples leave {len(indices) - n_val} for training after a {val_fraction} "
            f"validation split, fewer than {min_train}: give clients more data or lower val_fraction"
        )
    perm = np.random.default_rng(seed).permutation(indices)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
