import numpy as np
import pytest

from mfed.data.partition import dirichlet_partition, iid_partition, quantity_skew_partition, train_val_split

LABELS = np.random.default_rng(0).integers(0, 10, 10_000)


def assert_exact_cover(shards, n):
    merged = np.concatenate(shards)
    assert len(merged) == n and np.array_equal(np.sort(merged), np.arange(n))


def test_iid_covers_every_sample_once_with_even_sizes():
    shards = iid_partition(103, 4, seed=1)
    assert_exact_cover(shards, 103)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert all(np.array_equal(s, np.sort(s)) for s in shards)


def test_same_seed_same_split_other_seed_other_split():
    a, b, c = iid_partition(50, 3, seed=1), iid_partition(50, 3, seed=1), iid_partition(50, 3, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def class_shares(shards):
    return np.stack([np.bincount(LABELS[s], minlength=10) / len(s) for s in shards])


def test_dirichlet_large_alpha_is_close_to_iid():
    shards = dirichlet_partition(LABELS, 10, alpha=1e4, seed=0)
    assert_exact_cover(shards, len(LABELS))
    global_share = np.bincount(LABELS, minlength=10) / len(LABELS)
    assert np.abs(class_shares(shards) - global_share).max() < 0.05


def test_dirichlet_small_alpha_is_skewed():
    shares = class_shares(dirichlet_partition(LABELS, 10, alpha=0.05, seed=0, min_per_client=5))
    assert shares.max(axis=1).mean() > 0.6


def test_dirichlet_impossible_request_says_what_to_change():
    with pytest.raises(ValueError, match="raise alpha, lower the number of clients"):
        dirichlet_partition(LABELS[:30], 10, alpha=0.01, seed=0, min_per_client=3, max_retries=5)


def test_quantity_skew_sizes_follow_alpha():
    skewed = quantity_skew_partition(10_000, 10, alpha=0.1, seed=0)
    even = quantity_skew_partition(10_000, 10, alpha=1e4, seed=0)
    assert_exact_cover(skewed, 10_000)
    assert np.std(list(map(len, skewed))) > 5 * np.std(list(map(len, even)))
    assert min(map(len, quantity_skew_partition(100, 10, alpha=0.01, seed=0, min_per_client=5))) >= 5


def test_train_val_split_sizes_and_disjointness():
    train, val = train_val_split(np.arange(10, 30), 0.25, seed=0)
    assert len(val) == 5 and len(train) == 15 and not set(train) & set(val)
    assert len(train_val_split(np.arange(3), 0.01, seed=0)[1]) == 1  # at least one
    assert len(train_val_split(np.arange(3), 0.0, seed=0)[1]) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: iid_partition(10, 4, 0, min_per_client=3), "num_samples=10 cannot give 4 clients at least 3"),
        (lambda: iid_partition(10, 0, 0), "num_clients must be >= 1, got 0"),
        (lambda: quantity_skew_partition(10, 2, 0.0, 0), "alpha must be > 0, got 0.0"),
        (lambda: dirichlet_partition(np.zeros((2, 2)), 2, 1.0, 0), "labels must be 1-D"),
        (lambda: train_val_split(np.arange(5), 1.0, 0), r"val_fraction must lie in \[0, 1\)"),
        (lambda: train_val_split(np.arange(2), 0.5, 0, min_train=2), "fewer than 2"),
    ],
)
def test_errors_name_the_argument_and_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()
