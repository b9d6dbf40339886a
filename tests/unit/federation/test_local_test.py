"""FMTL-Bench's personalised (P-FL) evaluation: each client's own 9:1 held-out test data, beside the global test set."""

from __future__ import annotations

import numpy as np
import pytest

from mfed.data.partition import local_test_split, train_val_split
from mfed.federation.client import Client
from mfed.run import build


@pytest.mark.parametrize(
    "n, train, test",
    [(199, 179, 20), (198, 178, 20), (79, 71, 8), (158, 142, 16), (237, 213, 24), (316, 284, 32), (795, 715, 80),
     (2499, 2249, 250), (4998, 4498, 500)],
)  # fmt: skip
def test_the_split_keeps_fmtl_benchs_counts(n, train, test):
    # FMTL-Bench keeps the first int(0.9 n) of a client's permuted indices for training, the rest for its test
    indices = np.arange(1000, 1000 + n)
    rest, local = local_test_split(indices, 0.1, seed=3)
    assert (len(rest), len(local)) == (train, test) == (int(0.9 * n), n - int(0.9 * n))
    assert not set(rest) & set(local) and sorted([*rest, *local]) == list(indices)
    assert list(local) != list(indices[:test])  # drawn at random, not the first ones


def test_no_fraction_changes_nothing_downstream():
    shard = np.random.default_rng(0).permutation(50)
    rest, local = local_test_split(shard, 0.0, seed=1)
    assert len(local) == 0 and list(rest) == list(shard)  # as given: the train/val draw is the one before
    with pytest.raises(ValueError, match=r"data.local_test_fraction must lie in \[0, 1\), got 1.0"):
        local_test_split(shard, 1.0, seed=1)
    with pytest.raises(ValueError, match="keeps none for training"):
        local_test_split(np.arange(1), 0.5, seed=1)


def test_each_client_holds_disjoint_train_val_and_local_test_parts(tiny_cfg):
    plain = build(tiny_cfg("data.pool.length=80"))
    driver = build(tiny_cfg("data.pool.length=80", "data.local_test_fraction=0.1"))
    for before, spec in zip(plain.specs, driver.specs, strict=True):
        parts = [set(spec.train_indices), set(spec.val_indices), set(spec.local_test_indices)]
        shard = set().union(*parts)
        assert shard == set(before.train_indices) | set(before.val_indices)  # the same shard, split three ways
        assert sum(map(len, parts)) == len(shard) and len(parts[2]) == len(shard) - int(0.9 * len(shard))
        assert not before.local_test_indices
    # without the fraction, the train/val split is the one every earlier run used
    cfg = tiny_cfg("data.pool.length=80")
    from mfed.run import instantiate

    shards = instantiate(cfg.data.partition)(plain.setup.dataset, num_clients=len(plain.specs), seed=0,
                                             min_per_client=int(cfg.data.min_per_client))  # fmt: skip
    for k, spec in enumerate(plain.specs):
        train, val = train_val_split(shards[k], float(cfg.data.val_fraction), seed=k)
        assert spec.train_indices == tuple(train) and spec.val_indices == tuple(val)


@pytest.mark.parametrize("strategy", ["fedavg", "local"])
def test_each_client_scores_its_own_held_out_data_after_the_last_round(tiny_cfg, strategy):
    cfg = tiny_cfg("data.pool.length=80", "data.local_test_fraction=0.2", f"aggregation={strategy}")
    driver = build(cfg)
    driver.run()
    final = driver.history[-1]
    assert not any(k.startswith("local_test/") for k in driver.history[0])  # after the last round only
    for task_name, task in driver.tasks.items():
        holders = [s for s in driver.specs if task_name in s.tasks]
        for metric in task.higher_is_better:
            per_client = [final[f"client/{s.client_id}/{task_name}/local_test_{metric}"] for s in holders]
            assert final[f"local_test/{task_name}/{metric}"] == pytest.approx(np.mean(per_client))
    # each client's figure is its final model scored on exactly its local test indices (by the val path)
    for spec in driver.specs:
        as_val = spec.__class__(spec.client_id, spec.tasks, spec.train_indices, spec.local_test_indices, spec.seed)
        client = Client(as_val, *driver.setup.client_args(as_val)[1:])
        scored = client.evaluate(driver.state, "val")
        for task_name in spec.tasks:
            for metric, value in scored.metrics[task_name].items():
                assert final[f"client/{spec.client_id}/{task_name}/local_test_{metric}"] == pytest.approx(value)
