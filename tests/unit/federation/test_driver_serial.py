import json

import pytest
import torch

from mfed.aggregation.fold import aggregate
from mfed.federation.checkpointing import load_checkpoint
from mfed.federation.sampling import sample_clients
from mfed.run import build, run


def test_round_loop_on_the_serial_backend_trains_aggregates_and_logs(tiny_cfg):
    # Prepare
    cfg = tiny_cfg("task_mix=seg_depth")
    driver = build(cfg)
    initial = driver.strategy.init_state(driver.model)
    # Execute
    history = driver.run()
    # Assert: one row per round, per-task keys, bytes counted
    assert [r["round"] for r in history] == [1.0, 2.0]
    for row in history:
        for key in ("train/semseg/loss", "train/depth/loss", "val/semseg/mIoU", "val/depth/rmse", "comm/bytes_up"):
            assert key in row, key
        assert row["comm/bytes_up"] > 0 and row["comm/bytes_down"] > 0
    # 4 clients each send the encoder (and their decoder): the encoder's share is 4 encoders
    encoder = sum(
        v.numel() * v.element_size() for k, v in driver.model.state_dict().items() if k.startswith("encoder.")
    )
    assert history[0]["comm/bytes_up_encoder"] == 4 * encoder < history[0]["comm/bytes_up"]
    assert set(driver.state) == {"global", "task:semseg", "task:depth"}
    # the global test set is scored once, after the last round, by one client per task (they hold one model)
    assert "test/semseg/mIoU" not in history[0]
    last = history[-1]
    clients = [last[f"client/semseg-{i}/semseg/test_mIoU"] for i in (0, 1)]
    assert last["test/semseg/mIoU"] == clients[0] == clients[1]
    assert not torch.equal(
        driver.state["global"]["encoder.stages.0.0.0.weight"], initial["global"]["encoder.stages.0.0.0.weight"]
    )


def test_aggregated_encoder_is_the_weighted_mean_of_the_clients_updates(tiny_cfg):
    driver = build(tiny_cfg("task_mix=seg_depth", "federation.rounds=1"))
    driver.state = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    updates = list(driver.backend.fit(driver.client_ids, driver.state, 1, driver.plan(1, driver.client_ids)))
    new = aggregate(driver.fold, driver.state, updates)
    key = "encoder.stages.1.0.0.weight"
    n = torch.tensor([float(u.num_examples) for u in updates])
    expected = sum(w * u.state[key] for w, u in zip(n / n.sum(), updates, strict=True))
    torch.testing.assert_close(new["global"][key], expected)
    semseg = [u for u in updates if u.tasks[0] == "semseg"]
    dkey = next(k for k in semseg[0].state if k.startswith("decoders.semseg."))
    torch.testing.assert_close(new["task:semseg"][dkey], (semseg[0].state[dkey] + semseg[1].state[dkey]) / 2)


def test_run_writes_history_config_and_checkpoint(tiny_cfg):
    cfg = tiny_cfg("task_mix=seg_depth", "aggregation=fedavg")
    history = run(cfg)
    out = cfg.out_dir
    saved = json.loads((__import__("pathlib").Path(out) / "history.json").read_text())
    assert [r["round"] for r in saved] == [r["round"] for r in history]
    assert saved[-1]["val/depth/rmse"] == pytest.approx(history[-1]["val/depth/rmse"])
    summary = json.loads((__import__("pathlib").Path(out) / "summary.json").read_text())
    assert summary["tasks"]["depth"] == {"headline": "rmse", "higher_is_better": {"rmse": False, "abs_rel": False}}
    assert summary["final"]["round"] == 2 and summary["clients"] == ["semseg-0", "semseg-1", "depth-0", "depth-1"]
    assert summary["machine"]["torch"] == torch.__version__ and summary["machine"]["torch_threads"] == 1
    checkpoint = load_checkpoint(f"{out}/checkpoint.pt")
    assert checkpoint["round"] == 2 and set(checkpoint["state"]) == {"task:semseg", "task:depth"}


def test_local_strategy_moves_no_bytes(tiny_cfg):
    history = run(tiny_cfg("task_mix=seg_depth", "aggregation=local", "federation.rounds=1"))
    assert history[0]["comm/bytes_up"] == 0 and history[0]["comm/bytes_down"] == 0


def test_sampling_takes_a_seeded_fraction_in_order():
    ids = [f"c{i}" for i in range(10)]
    picked = sample_clients(ids, 0.3, seed=1, round_idx=2)
    assert len(picked) == 3 and picked == sorted(picked, key=ids.index)
    assert picked == sample_clients(ids, 0.3, seed=1, round_idx=2)
    assert sample_clients(ids, 1.0, seed=1, round_idx=2) == ids
    assert len(sample_clients(ids, 0.01, seed=1, round_idx=2)) == 1


def test_partial_participation_evaluates_everyone(tiny_cfg):
    history = run(tiny_cfg("task_mix=seg_depth", "federation.fraction=0.5", "federation.rounds=1"))
    assert history[0]["comm/clients"] == 2
    assert sum(k.startswith("client/") and k.endswith("/mIoU") for k in history[0]) == 2


@pytest.mark.parametrize(("strategy", "scorers"), [("mfed", 2), ("fedavg", 2), ("local", 4)])
def test_the_test_set_is_scored_once_per_shared_model_with_the_same_result(tiny_cfg, strategy, scorers):
    driver = build(tiny_cfg("task_mix=seg_depth", f"aggregation={strategy}"))
    history = driver.run()
    assert len(driver.test_scorers()) == scorers
    # every client, scored by hand on the final state: each task's figure is their mean
    driver.backend.start(driver.specs, driver.setup)
    everyone = list(driver.backend.evaluate(driver.client_ids, driver.state, split="test"))
    for task in ("semseg", "depth"):
        metric = driver.tasks[task].headline
        values = [e.metrics[task][metric] for e in everyone if e.tasks[0] == task]
        assert history[-1][f"test/{task}/{metric}"] == pytest.approx(sum(values) / len(values), rel=1e-6)
        for e in (e for e in everyone if e.tasks[0] == task):  # each client's own figure, scored once or not
            own = e.metrics[task][metric]
            assert history[-1][f"client/{e.client_id}/{task}/test_{metric}"] == pytest.approx(own, rel=1e-6)
        if strategy != "local":
            assert values[0] == values[1]  # one model per task: scoring it once loses nothing


def test_eval_fraction_scores_a_seeded_sample_of_clients_apart_from_trainings(tiny_cfg, tmp_path):
    # Prepare / Execute: 6 clients, half evaluated per round, twice with the same seed
    args = ("federation.eval_fraction=0.5", "federation.fraction=0.5", "data.test=null")
    histories = [run(tiny_cfg(*args, f"out_dir={tmp_path / str(i)}")) for i in range(2)]
    # Assert: 3 clients per evaluation round, named by their client keys; the same ones for the seed
    driver = build(tiny_cfg())
    evaluated = []
    for row in histories[0]:
        scored = sorted(
            {k.split("/")[1] for k in row if k.startswith("client/") and k.endswith(("/mIoU", "/rmse", "/odsF"))}
        )
        expected = sample_clients(driver.client_ids, 0.5, 0, int(row["round"]), stream=1)
        assert row["eval/clients"] == 3 and scored == sorted(expected)
        evaluated.append(expected)
    assert [row["eval/clients"] for row in histories[1]] == [3.0, 3.0]
    assert all(a == b for a, b in zip(histories[0], histories[1], strict=True) if "time/round_s" not in a)
    trained = [sample_clients(driver.client_ids, 0.5, 0, r) for r in (1, 2)]
    assert evaluated != trained  # an independent draw, not the round's trained clients
    with pytest.raises(ValueError, match=r"federation.eval_fraction must lie in \(0, 1\], got 0"):
        build(tiny_cfg("federation.eval_fraction=0"))
