import numpy as np
import pytest

from mfed.data.partition import dirichlet_partition, iid_partition, quantity_skew_partition, train_val_split

LABELS = np.random.default_rng(0).integers(0, 10, 10_000)

SCHEMES = {
    "iid": lambda seed: iid_partition(1000, 7, seed=seed),
    "dirichlet": lambda seed: dirichlet_partition(LABELS[:1000], 7, alpha=0.5, seed=seed),
    "quantity_skew": lambda seed: quantity_skew_partition(1000, 7, alpha=0.5, seed=seed),
}


def assert_exact_cover(shards, n):
    merged = np.concatenate(shards)
    assert len(merged) == n and np.array_equal(np.sort(merged), np.arange(n))


def class_shares(shards):
    return np.stack([np.bincount(LABELS[s], minlength=10) / len(s) for s in shards])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_sample_assigned_once_as_sorted_int64(scheme):
    # Execute
    shards = SCHEMES[scheme](0)
    # Assert
    assert len(shards) == 7
    assert_exact_cover(shards, 1000)
    assert all(s.dtype == np.int64 and np.all(np.diff(s) > 0) for s in shards)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_split_other_seed_other_split(scheme):
    a, b, c = SCHEMES[scheme](1), SCHEMES[scheme](1), SCHEMES[scheme](2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_iid_sizes_differ_by_at_most_one():
    sizes = list(map(len, iid_partition(103, 4, seed=1)))
    assert sorted(sizes) == [25, 26, 26, 26]


def test_dirichlet_large_alpha_is_close_to_iid():
    # Prepare
    global_share = np.bincount(LABELS, minlength=10) / len(LABELS)
    # Execute
    shards = dirichlet_partition(LABELS, 10, alpha=1e4, seed=0)
    # Assert
    assert_exact_cover(shards, len(LABELS))
    assert np.abs(class_shares(shards) - global_share).max() < 0.05


def test_dirichlet_small_alpha_is_skewed_and_keeps_min_per_client():
    shards = dirichlet_partition(LABELS, 10, alpha=0.05, seed=0, min_per_client=5)
    assert_exact_cover(shards, len(LABELS))
    assert min(map(len, shards)) >= 5
    assert class_shares(shards).max(axis=1).mean() > 0.6


def test_dirichlet_impossible_request_says_what_to_change():
    with pytest.raises(ValueError, match="alpha is too small or there are too many clients.*raise alpha"):
        dirichlet_partition(LABELS[:30], 10, alpha=0.01, seed=0, min_per_client=3, max_retries=5)


def test_dirichlet_empty_labels_with_no_minimum():
    shards = dirichlet_partition(np.array([], dtype=np.int64), 3, alpha=1.0, seed=0, min_per_client=0)
    assert [len(s) for s in shards] == [0, 0, 0]


def test_quantity_skew_sizes_follow_alpha():
    # Execute
    skewed = list(map(len, quantity_skew_partition(10_000, 10, alpha=0.1, seed=0)))
    even = list(map(len, quantity_skew_partition(10_000, 10, alpha=1e4, seed=0)))
    reserved = quantity_skew_partition(100, 10, alpha=0.01, seed=0, min_per_client=5)
    # Assert
    assert max(skewed) > 3 * min(skewed) + 500
    assert max(even) - min(even) < 150  # ~1000 each, multinomial noise only
    assert min(map(len, reserved)) >= 5
    assert_exact_cover(reserved, 100)


def test_train_val_split_sizes_and_disjointness():
    # Prepare
    indices = np.arange(10, 30)
    # Execute
    train, val = train_val_split(indices, 0.25, seed=0)
    # Assert
    assert len(val) == 5 and len(train) == 15 and not set(train) & set(val)
    assert np.array_equal(np.sort(np.concatenate([train, val])), indices)
    assert np.array_equal(val, np.sort(val)) and np.array_equal(train, np.sort(train))
    assert len(train_val_split(np.arange(3), 0.01, seed=0)[1]) == 1  # at least one
    assert len(train_val_split(np.arange(3), 0.0, seed=0)[1]) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: iid_partition(10, 4, 0, min_per_client=3),
            "num_samples=10 cannot give 4 clients at least 3 examples each: "
            "lower the number of clients or raise the data size",
        ),
        (lambda: quantity_skew_partition(10, 4, 1.0, 0, min_per_client=3), "num_samples=10 cannot give 4 clients"),
        (lambda: dirichlet_partition(LABELS[:10], 4, 1.0, 0, min_per_client=3), "num_samples=10 cannot give 4"),
        (lambda: iid_partition(10, 0, 0), "num_clients must be >= 1, got 0: ask for at least one client"),
        (lambda: quantity_skew_partition(10, 2, 0.0, 0), "alpha must be > 0, got 0.0: use a small alpha"),
        (lambda: dirichlet_partition(LABELS, 2, -1.0, 0), "alpha must be > 0, got -1.0"),
        (lambda: dirichlet_partition(np.zeros((2, 2)), 2, 1.0, 0), r"labels must be 1-D, got shape \(2, 2\)"),
        (lambda: dirichlet_partition(LABELS, 2, 1.0, 0, max_retries=0), "max_retries must be >= 1, got 0"),
        (lambda: train_val_split(np.arange(5), 1.0, 0), r"val_fraction must lie in \[0, 1\), got 1.0"),
        (lambda: train_val_split(np.arange(5), -0.1, 0), r"val_fraction must lie in \[0, 1\), got -0.1"),
        (lambda: train_val_split(np.arange(2), 0.5, 0, min_train=2), "fewer than min_train=2.*lower val_fraction"),
    ],
)
def test_errors_name_the_argument_and_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_proportional_split_is_fmtl_benchs_unbalanced_split():
    from mfed.data.partition import proportional_partition
    from mfed.data.sharding import Proportional

    # FMTL-Bench (utils.py, noniid): one_shot = N // (n (n + 1) / 2); client i gets (i + 1) * one_shot; the rest unused
    parts = Proportional()(list(range(795)), num_clients=4, seed=0, min_per_client=1)
    assert [len(p) for p in parts] == [79, 158, 237, 316]
    flat = np.concatenate(parts)
    assert len(set(flat.tolist())) == 790 and all(np.all(np.diff(p) > 0) for p in parts)
    assert [len(p) for p in proportional_partition(100, [0.5, 1.5], seed=1)] == [25, 75]
    with pytest.raises(ValueError, match="gives 3 weights for 4 clients"):
        Proportional([1, 2, 3])(list(range(40)), num_clients=4, seed=0, min_per_client=1)
    with pytest.raises(ValueError, match="must be positive numbers"):
        proportional_partition(40, [1, 0], seed=0)
    with pytest.raises(ValueError, match="gives the smallest client 3 examples, fewer than data.min_per_client=4"):
        proportional_partition(30, [1, 2, 3, 4], seed=0, min_per_client=4)
