"""benchmark.tune: the same budget per strategy, draws shared across strategies, the choice on validation by rank."""

import json
import math

import pytest
from omegaconf import OmegaConf

from mfed.config import load_config
from mfed.sweeps.benchmark import benchmark_grid, plan_benchmark
from mfed.sweeps.tuning import choose, configurations, draw, tuning_lines, tuning_plan, tuning_results
from tests.unit.sweeps.test_benchmark import BASE


def bench(**changes):
    cfg = load_config(["benchmark=quick"]).benchmark
    OmegaConf.update(cfg, "strategies", ["local", "fedprox", "mfed"], merge=False)
    tune = {"samples": 3, "seeds": [100], "space": {"all": {"optimizer.lr": [1e-4, 1e-2]},
                                                   "fedprox": {"aggregation.mu": [1e-3, 1e-1]}}}  # fmt: skip
    OmegaConf.update(cfg, "tune", tune, merge=False, force_add=True)
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def test_draws_are_log_uniform_within_bounds_and_shared_by_every_strategy():
    values = [draw("optimizer.lr", i, 1e-4, 1e-2) for i in range(2000)]
    assert all(1e-4 <= v <= 1e-2 for v in values)
    logs = [math.log10(v) for v in values]
    assert sum(lg < -3 for lg in logs) / len(logs) == pytest.approx(0.5, abs=0.04)  # the log-midpoint halves them
    assert draw("optimizer.lr", 7, 1e-4, 1e-2) == values[7]  # deterministic
    a = configurations({"optimizer.lr": (1e-4, 1e-2)}, 3)
    b = configurations({"optimizer.lr": (1e-4, 1e-2), "aggregation.mu": (1e-3, 1e-1)}, 3)
    assert [c["optimizer.lr"] for c in a] == [c["optimizer.lr"] for c in b]  # common random numbers


def test_every_strategy_gets_the_same_budget_on_fresh_seeds():
    cfg = bench()
    runs, _, settings, _ = benchmark_grid(cfg, BASE)
    trials, configs = tuning_plan(cfg, BASE, runs, settings)
    per_strategy = {s: sum(t.labels["strategy"] == s for t in trials) for s in runs}
    assert per_strategy == {"local": 3, "fedprox": 3, "mfed": 3}  # samples x tuning seeds each
    fedprox = [t for t in trials if t.labels["strategy"] == "fedprox"]
    assert {o for o in fedprox[0].overrides if o.startswith(("optimizer.lr", "aggregation.mu", "seed"))} == {
        f"optimizer.lr={configs['default', 'fedprox'][0]['optimizer.lr']}",
        f"aggregation.mu={configs['default', 'fedprox'][0]['aggregation.mu']}", "seed=100"}  # fmt: skip
    with pytest.raises(ValueError, match=r"benchmark.tune.seeds \[1\] are among benchmark.seeds"):
        tuning_plan(bench(**{"tune.seeds": [1, 100]}), BASE, runs, settings)
    with pytest.raises(ValueError, match="benchmark.tune.space.dito: not a strategy; use all or one of"):
        tuning_plan(bench(**{"tune.space": {"dito": {"aggregation.lam": [0.1, 1.0]}}}), BASE, runs, settings)
    # a strategy's space is unused when the strategy is left out of this benchmark
    space = {"all": {"optimizer.lr": [1e-4, 1e-2]}, "fedprox": {"aggregation.mu": [1e-3, 1e-1]},
             "ditto": {"aggregation.lam": [0.1, 1.0]}}  # fmt: skip
    unused = bench(**{"tune.space": space})
    assert len(tuning_plan(unused, BASE, runs, settings)[0]) == len(trials)
    with pytest.raises(ValueError, match=r"optimizer.lr=\[0, 1\]: give \[low, high\] with 0 < low <= high"):
        tuning_plan(bench(**{"tune.space": {"all": {"optimizer.lr": [0, 1]}}}), BASE, runs, settings)


def test_the_choice_is_the_best_mean_rank_over_tasks_with_failures_last():
    # task a (higher is better): configs 0.5, 0.7, 0.6 -> ranks 3, 1, 2; task b (lower): 1.0, 2.0, 0.5 -> 2, 3, 1
    figures = [{"a": 0.5, "b": 1.0}, {"a": 0.7, "b": 2.0}, {"a": 0.6, "b": 0.5}]
    best, scores = choose(figures, {"a": True, "b": False})
    assert (best, scores) == (2, [2.5, 2.0, 1.5])
    best, scores = choose([None, {"a": 0.1, "b": 9.0}, {"a": float("nan"), "b": 0.1}], {"a": True, "b": False})
    assert best == 1 and scores[0] is None  # a failed configuration ranks last and has no score


def test_tuning_results_read_validation_only_and_the_comparison_uses_the_choice(tmp_path):
    cfg = bench(**{"tune.samples": 2, "tune.seeds": [100, 101]})
    runs, _, settings, _ = benchmark_grid(cfg, BASE)
    trials, configs = tuning_plan(cfg, BASE, runs, settings)
    # seg's headline: config 1 wins on validation for every strategy; its test figure (worse) must not matter
    for t in trials:
        i, seed = t.labels["config"], t.labels["seed"]
        val, test = (40.0 + 10 * i + seed % 2, 90.0 - 50 * i)
        final = {"val/semseg/mIoU": val, "test/semseg/mIoU": test, "val/depth/rmse": 1.0 - 0.1 * i}
        tasks = {"semseg": {"headline": "mIoU", "higher_is_better": {"mIoU": True}},
                 "depth": {"headline": "rmse", "higher_is_better": {"rmse": False}}}  # fmt: skip
        (tmp_path / t.name).mkdir()
        (tmp_path / t.name / "summary.json").write_text(json.dumps({"status": "completed", "final": final,
                                                                    "tasks": tasks}))  # fmt: skip
    tuning = tuning_results(trials, configs, tmp_path)
    fedprox = tuning["default"]["fedprox"]
    assert fedprox["chosen"] == configs["default", "fedprox"][1] and fedprox["budget"] == 4
    assert fedprox["configs"][0]["val"]["semseg"] == pytest.approx(40.5)  # mean over the two tuning seeds
    tuned = {("default", s): [f"{k}={v}" for k, v in e["chosen"].items()] for s, e in tuning["default"].items()}
    main = plan_benchmark(cfg, BASE, tuned)
    lr = configs["default", "mfed"][1]["optimizer.lr"]
    assert all(f"optimizer.lr={lr}" in t.overrides for t in main)  # every strategy drew the same lr at config 1
    text = "\n".join(tuning_lines(tuning, "default"))
    assert "| fedprox | optimizer.lr=" in text and "(4 runs per strategy" in text


def test_equal_figures_share_their_rank():
    # a: a tie between configs 0 and 1 (ranks 1.5 each), config 2 last; b (lower): config 1 best, then 2, then 0
    best, scores = choose([{"a": 0.5, "b": 3.0}, {"a": 0.5, "b": 1.0}, {"a": 0.1, "b": 2.0}], {"a": True, "b": False})
    assert (best, scores) == (1, [2.25, 1.25, 2.5])


def test_a_failed_first_draw_ranks_last_and_the_others_still_decide(tmp_path):
    cfg = bench(**{"tune.samples": 2, "tune.seeds": [100]})
    runs, _, settings, _ = benchmark_grid(cfg, BASE)
    trials, configs = tuning_plan(cfg, BASE, runs, settings)
    tasks = {"semseg": {"headline": "mIoU", "higher_is_better": {"mIoU": True}}}
    for t in trials:
        if t.labels["config"] == 1:  # config 0 left no folder (its run failed before writing one)
            (tmp_path / t.name).mkdir()
            summary = {"status": "completed", "final": {"val/semseg/mIoU": 30.0}, "tasks": tasks}
            (tmp_path / t.name / "summary.json").write_text(json.dumps(summary))
    for entry in tuning_results(trials, configs, tmp_path)["default"].values():
        assert entry["chosen"] == entry["configs"][1]["values"] and entry["configs"][0]["rank"] is None
