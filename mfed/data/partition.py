"""Partitioning the training pool over clients: pure numpy functions, deterministic by seed.

=========================== ==================================================================
function                    what differs between clients
=========================== ==================================================================
``iid_partition``           nothing: a random permutation split as evenly as possible
``dirichlet_partition``     label mix: each class spread over clients with Dir(alpha) shares
                            (Hsu et al., 2019); small alpha = few classes per client
``quantity_skew_partition`` size: shares ~ Dir(alpha), content IID
``train_val_split``         a client's own train / validation split
=========================== ==================================================================

Every partition returns one sorted int64 index array per client; every sample is assigned exactly
once. Configs pick a scheme through :mod:`mfed.data.sharding` (Hydra ``_target_``), not by name here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)


def _check_counts(num_samples: int, num_clients: int, min_per_client: int) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}: ask for at least one client")
    if min_per_client < 0:
        raise ValueError(f"min_per_client must be >= 0, got {min_per_client}: use 0 to allow empty clients")
    if num_samples < num_clients * min_per_client:
        raise ValueError(
            f"num_samples={num_samples} cannot give {num_clients} clients at least {min_per_client} "
            "examples each: lower the number of clients or raise the data size"
        )


def _check_alpha(alpha: float) -> None:
    if not alpha > 0:  # also rejects NaN
        raise ValueError(
            f"alpha must be > 0, got {alpha}: use a small alpha (e.g. 0.1) for strong skew, a large one for near-IID"
        )


def _sorted_parts(perm: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    return [np.sort(part).astype(np.int64) for part in np.split(perm, np.cumsum(sizes)[:-1])]


def iid_partition(num_samples: int, num_clients: int, seed: int, min_per_client: int = 1) -> list[np.ndarray]:
    """Split ``range(num_samples)`` at random into ``num_clients`` parts whose sizes differ by at most 1.

    Args:
        num_samples: Size of the pool.
        num_clients: Number of clients (>= 1).
        seed: Seed of the permutation.
        min_per_client: Smallest acceptable client.

    Returns:
        One sorted int64 index array per client.

    Raises:
        ValueError: If ``num_clients < 1`` or the pool cannot give everyone ``min_per_client``.

    """
    _check_counts(num_samples, num_clients, min_per_client)
    perm = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, num_clients)]


def _dirichlet_draw(
    by_class: list[np.ndarray], num_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[np.empty(0, dtype=np.int64)] for _ in range(num_clients)]
    for indices in by_class:
        shares = rng.dirichlet(np.full(num_clients, alpha))
        # Truncating the cumulative cut points keeps every index in exactly one chunk.
        cuts = (np.cumsum(shares)[:-1] * len(indices)).astype(int)
        for client, chunk in enumerate(np.split(indices, cuts)):
            parts[client].append(chunk)
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def dirichlet_partition(
    labels: np.ndarray, num_clients: int, alpha: float, seed: int, min_per_client: int = 1, max_retries: int = 100
) -> list[np.ndarray]:
    """Label-skewed split: each class's indices divided over clients with Dir(alpha) proportions.

    Draws again (from the same seeded generator, so the result stays deterministic) until every
    client holds at least ``min_per_client`` samples.

    Args:
        labels: ``(N,)`` integer class of each sample (for multi-object samples, a dominant class).
        num_clients: Number of clients (>= 1).
        alpha: Dirichlet concentration (> 0); small = few classes per client, large = near-IID.
        seed: Seed.
        min_per_client: Smallest acceptable client.
        max_retries: Draws before giving up (>= 1).

    Returns:
        One sorted int64 index array (into ``labels``) per client.

    Raises:
        ValueError: On bad arguments, or when no draw in ``max_retries`` satisfies ``min_per_client``.

    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}: pass one (dominant) class per sample")
    _check_alpha(alpha)
    _check_counts(len(labels), num_clients, min_per_client)
    if max_retries < 1:
        raise ValueError(f"max_retries must be >= 1, got {max_retries}: allow at least one draw")
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    for attempt in range(1, max_retries + 1):
        shards = _dirichlet_draw(by_class, num_clients, alpha, rng)
        if min(len(s) for s in shards) >= min_per_client:
            log.debug("Dirichlet(alpha=%s) split over %d clients found on draw %d", alpha, num_clients, attempt)
            return shards
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) split of {len(labels)} samples gave all {num_clients} clients at least "
        f"{min_per_client} examples in {max_retries} draws: alpha is too small or there are too many clients "
        "for the data; raise alpha, lower the number of clients or min_per_client, or raise the data size"
    )


def quantity_skew_partition(
    num_samples: int, num_clients: int, alpha: float, seed: int, min_per_client: int = 1
) -> list[np.ndarray]:
    """IID content with client sizes ``min_per_client`` plus Dir(alpha) shares of the rest.

    Args:
        num_samples: Size of the pool.
        num_clients: Number of clients (>= 1).
        alpha: Dirichlet concentration (> 0); small = very unequal sizes, large = near-equal.
        seed: Seed.
        min_per_client: Reserved for every client before the skewed shares are drawn.

    Returns:
        One sorted int64 index array per client.

    Raises:
        ValueError: If ``alpha <= 0``, ``num_clients < 1`` or the pool is too small.

    """
    _check_alpha(alpha)
    _check_counts(num_samples, num_clients, min_per_client)
    rng = np.random.default_rng(seed)
    spare = num_samples - num_clients * min_per_client
    # A multinomial draw turns the real-valued shares into integer sizes that sum exactly to ``spare``.
    extra = rng.multinomial(spare, rng.dirichlet(np.full(num_clients, alpha)))
    return _sorted_parts(rng.permutation(num_samples), min_per_client + extra)


def proportional_partition(
    num_samples: int, weights: Sequence[float], seed: int, min_per_client: int = 1
) -> list[np.ndarray]:
    """Split ``range(num_samples)`` at random into parts in the ratio of ``weights``, as FMTL-Bench's unbalanced split.

    FMTL-Bench's "unbalanced" scenarios (``noniid: True``) give client ``i`` of ``n`` the slice
    ``(i+1) * one_shot`` of a permutation, ``one_shot = N // (n (n + 1) / 2)``, and drop the
    remainder (NYUD-v2's 795 images over 4 clients: 79, 158, 237, 316; 5 unused). Here client ``i``
    gets ``floor(weights[i] * N / sum(weights))`` examples (the same counts for integer weights
    1..n: ``weights[i] * one_shot``), consecutive slices of one permutation; the rest is unused.

    Args:
        num_samples: Size of the pool.
        weights: One positive weight per client, in client order.
        seed: Seed of the permutation.
        min_per_client: Smallest acceptable client.

    Returns:
        One sorted int64 index array per client.

    Raises:
        ValueError: A weight is not positive, or the smallest client would get fewer than ``min_per_client``.

    """
    w = np.asarray(weights, dtype=np.float64)
    _check_counts(num_samples, len(w), min_per_client)
    if not (w > 0).all() or not np.isfinite(w).all():
        raise ValueError(f"data.partition.weights must be positive numbers, one per client, got {list(weights)}")
    if np.allclose(w, np.round(w)):  # FMTL-Bench's integer rule, exactly
        sizes = np.round(w).astype(np.int64) * (num_samples // int(np.round(w).sum()))
    else:
        sizes = np.floor(w * num_samples / w.sum() + 1e-9).astype(np.int64)
    if sizes.min() < max(min_per_client, 1):
        raise ValueError(
            f"a pool of {num_samples} in the ratio {list(weights)} gives the smallest client {sizes.min()} examples, "
            f"fewer than data.min_per_client={min_per_client}: raise the pool size (data.pool.length)"
        )
    perm = np.random.default_rng(seed).permutation(num_samples)
    return _sorted_parts(perm[: sizes.sum()], sizes)


def local_test_split(indices: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split one client's indices into sorted (rest, local test) at random, as FMTL-Bench does.

    FMTL-Bench permutes a client's indices and keeps the first ``int(0.9 n)`` for training and
    the rest as its personal test set (199 -> 179 + 20, 79 -> 71 + 8): the local test part here is
    ``n - floor((1 - fraction) n)`` examples, at least one when ``fraction > 0``.

    Args:
        indices: The client's sample indices.
        fraction: Share held out, in ``[0, 1)`` (0: none; FMTL-Bench: 0.1).
        seed: Seed (the draw is independent of the train/val split's).

    Returns:
        ``(rest, local_test)``: disjoint int64 arrays whose union is ``indices``, sorted (with
        ``fraction=0``: ``indices`` as given, and nothing).

    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.local_test_fraction must lie in [0, 1), got {fraction}: use 0.1 as FMTL-Bench, or 0")
    indices = np.asarray(indices, dtype=np.int64)
    if fraction == 0:  # as given: the train/val split then draws exactly as without this step
        return indices, np.zeros(0, np.int64)
    n_test = max(1, len(indices) - math.floor((1.0 - fraction) * len(indices) + 1e-9))
    if n_test >= len(indices):
        raise ValueError(
            f"a client of {len(indices)} examples keeps none for training after data.local_test_fraction={fraction}: "
            "give clients more data or lower the fraction"
        )
    perm = np.random.default_rng([seed, 7]).permutation(indices)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def train_val_split(
    indices: np.ndarray, val_fraction: float, seed: int, min_train: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Split one client's indices into sorted (train, val) at random.

    Args:
        indices: The client's sample indices.
        val_fraction: Share for validation, in ``[0, 1)``; val gets ``round(val_fraction * n)``
            samples, at least one when ``val_fraction > 0``.
        seed: Seed.
        min_train: Smallest acceptable train part.

    Returns:
        ``(train, val)``: disjoint sorted int64 arrays whose union is ``indices``.

    Raises:
        ValueError: If ``val_fraction`` is outside ``[0, 1)`` or train would be smaller than ``min_train``.

    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}: use e.g. 0.1, or 0 for no validation")
    indices = np.asarray(indices, dtype=np.int64)
    n_val = max(1, round(val_fraction * len(indices))) if val_fraction > 0 else 0
    if len(indices) - n_val < min_train:
        raise ValueError(
            f"{len(indices)} examples leave {len(indices) - n_val} for training after a val_fraction={val_fraction} "
            f"split, fewer than min_train={min_train}: give clients more data or lower val_fraction"
        )
    perm = np.random.default_rng(seed).permutation(indices)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
