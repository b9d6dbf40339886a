"""Stopping when validation plateaus (federation.patience, federation.min_delta)."""

import json
from pathlib import Path

import pytest

from mfed.federation.plateau import Plateau
from mfed.run import build
from mfed.tasks.depth import Depth
from mfed.tasks.semseg import SemanticSegmentation

TASKS = {"semseg": SemanticSegmentation("semseg", num_classes=3), "depth": Depth("depth")}


def rows(*pairs):
    return [{"round": float(i + 1), "val/semseg/mIoU": m, "val/depth/rmse": r} for i, (m, r) in enumerate(pairs)]


def test_the_score_is_the_mean_signed_relative_change_against_the_first_evaluation():
    history = rows((20.0, 2.0), (30.0, 1.5), (31.0, 1.6))
    history.insert(1, {"round": 1.5, "train/semseg/loss": 1.0})  # a row without validation is skipped
    # round 2: (+10/20 + 0.5/2) / 2 = 0.375; round 3: (+11/20 + 0.4/2) / 2 = 0.375
    assert Plateau(2).scores(history, TASKS) == pytest.approx([0.0, 0.375, 0.375])


@pytest.mark.parametrize(
    "pairs, patience, stop",
    [
        ([(20, 2.0), (30, 1.5), (30.1, 1.5)], 1, True),  # +0.0025 < 0.005: no improvement for 1 evaluation
        ([(20, 2.0), (30, 1.5), (30.3, 1.5)], 1, False),  # +0.0075 > 0.005
        ([(20, 2.0), (30, 1.5), (30.1, 1.5)], 2, False),  # only 1 evaluation without improvement yet
        ([(20, 2.0), (30, 1.5), (29, 1.6), (30.1, 1.5)], 2, True),  # 2 without improving on round 2's
        ([(20, 2.0), (30, 1.5)], 2, False),  # too few evaluations to judge
        ([(20, 2.0), (float("nan"), 1.5), (30, 1.5)], 1, False),  # a NaN evaluation is the worst, never the best
    ],
)
def test_it_stops_after_patience_evaluations_without_an_improvement_above_min_delta(pairs, patience, stop):
    assert Plateau(patience, 0.005).reached(rows(*pairs), TASKS) is stop


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="federation.patience must be an integer >= 1 or null"):
        Plateau(0)
    with pytest.raises(ValueError, match="federation.min_delta must be >= 0"):
        Plateau(2, -0.1)


def test_a_run_that_plateaus_stops_scores_its_test_sets_and_says_why(tiny_cfg):
    cfg = tiny_cfg("federation.rounds=5", "federation.patience=1", "federation.min_delta=100", "data.pool.length=80",
                   "data.local_test_fraction=0.2")  # fmt: skip
    driver = build(cfg)
    history = driver.run()
    assert [r["round"] for r in history] == [1.0, 2.0] and driver.status == "completed"
    assert any(k.startswith("test/") for k in history[-1]) and any(k.startswith("local_test/") for k in history[-1])
    summary = json.loads((Path(cfg.out_dir) / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["rounds_planned"] == 5
    assert summary["stopped"] == {"round": 2, "reason": Plateau(1, 100.0).describe()}
    # without the rule every round runs
    full = build(tiny_cfg("federation.rounds=3", "data.pool.length=80"))
    assert len(full.run()) == 3 and "stopped" not in full.meta


def test_a_resumed_run_that_had_plateaued_decides_again_from_its_history(tiny_cfg):
    from mfed.federation.checkpointing import load_checkpoint

    cfg = tiny_cfg("federation.rounds=5", "federation.patience=1", "federation.min_delta=100", "data.pool.length=80")
    first = build(cfg)
    first.run()
    assert first.meta["stopped"]["round"] == 2
    again = build(tiny_cfg("federation.rounds=5", "data.pool.length=80", f"resume={cfg.out_dir}"))
    assert again.meta["stopped"]["round"] == 2  # restored from the checkpoint
    history = again.run()  # without the rule it runs the rounds left: the old stop does not end it
    assert len(history) == 5 and "stopped" not in again.meta
    assert load_checkpoint(f"{cfg.out_dir}/checkpoint.pt")["round"] == 5
