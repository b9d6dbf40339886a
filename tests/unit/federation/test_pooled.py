"""The centralised reference: every client's training data pooled, one model trained on all tasks."""

import itertools
import math

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from mfed.federation.client import round_seed, shard
from mfed.federation.pooled import PooledTraining
from mfed.run import build

SEG_DEPTH = ("task_mix=seg_depth", "aggregation=centralised")


def test_the_pooled_data_is_the_union_of_the_clients_training_shards(tiny_cfg):
    driver = build(tiny_cfg(*SEG_DEPTH))
    pooled = PooledTraining(driver.specs, driver.setup, driver.seed)
    for task, data in pooled.data.items():
        mine = [s for s in driver.specs if task in s.tasks]
        assert len(data) == sum(len(s.train_indices) for s in mine) and len(mine) == 2
    assert set(pooled.data) == {"semseg", "depth"}


@pytest.mark.parametrize("budget", ["pooled", "client"])
def test_one_task_pooled_training_equals_a_plain_loop_over_the_concatenated_shards(tiny_cfg, budget):
    # Prepare: one task (two clients); the reference is a plain PyTorch loop with the same data order,
    # over every pooled batch ("pooled") or stopped after the mean client's number of batches ("client")
    driver = build(tiny_cfg(*SEG_DEPTH, "~tasks.depth", "federation.batch_size=2"))
    state = driver.strategy.init_state(driver.model)
    setup, task = driver.setup, driver.tasks["semseg"]
    model = setup.model_factory([task])
    model.load_state_dict({k: v for scope in state.values() for k, v in scope.items()})
    data = ConcatDataset([shard(setup.dataset, s.train_indices, [task.target_key]) for s in driver.specs])
    seed = round_seed(driver.seed, 1)
    torch.manual_seed(seed)
    optimizer = setup.optimizer(list(model.parameters()))
    model.train()
    loader = DataLoader(
        data, batch_size=setup.config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    client_steps = [math.ceil(len(s.train_indices) / 2) for s in driver.specs]
    steps = len(loader) if budget == "pooled" else round(sum(client_steps) / len(client_steps))
    assert steps < len(loader) or budget == "pooled"
    for batch in itertools.islice(loader, steps):
        optimizer.zero_grad()
        (task.loss_weight * task.loss(model(batch["image"], "semseg"), batch[task.target_key])).backward()
        optimizer.step()
    # Execute
    new, row = PooledTraining(driver.specs, setup, driver.seed, budget).fit(state, 1)
    # Assert: the same weights, and no model bytes exchanged
    expected = model.state_dict()
    for scope in new.values():
        for key, value in scope.items():
            torch.testing.assert_close(value, expected[key], rtol=1e-6, atol=1e-7)  # to float rounding
    assert row["comm/bytes_up"] == row["comm/bytes_down"] == row["comm/clients"] == 0.0
    assert row["train/semseg/loss"] > 0


def test_a_centralised_run_is_scored_by_the_clients_like_a_federation(tiny_cfg):
    driver = build(tiny_cfg(*SEG_DEPTH))
    history = driver.run()
    final = history[-1]
    assert {"test/semseg/mIoU", "test/depth/rmse", "val/semseg/mIoU", "train/depth/task_loss"} <= set(final)
    assert set(driver.state) == {"global", "task:semseg", "task:depth"}  # one model, nothing private
    assert driver.test_scorers() == {"semseg-0": ["semseg-0", "semseg-1"], "depth-0": ["depth-0", "depth-1"]}
    assert all(row["comm/bytes_up"] == 0 for row in history)
