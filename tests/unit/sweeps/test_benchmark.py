"""A benchmark's plan, and its report from run folders fabricated with known numbers."""

import json

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats as sps

from mfed.config import load_config
from mfed.metrics.delta import delta_m
from mfed.sweeps.benchmark import collect_runs, plan_benchmark, strategy_runs, summarise
from mfed.sweeps.plan import Trial, merge_overrides
from mfed.sweeps.report import client_delta, client_tasks
from mfed.sweeps.results import markdown, write_results
from tests.conftest import TINY

BASE = [*(o for o in TINY if o != "backend=serial"), "task_mix=seg_depth", "federation.rounds=1"]


def bench(**changes):
    cfg = load_config(["benchmark=quick"]).benchmark
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def test_the_plan_is_every_strategy_on_every_seed_with_the_command_line_winning():
    variant = {"mfed_gn": ["aggregation=mfed", "aggregation.name=mfed_gn", "model.encoder.norm=group"]}
    trials = plan_benchmark(bench(strategies=["local", "mfed", variant], seeds=[0, 1]), BASE)
    assert [t.name for t in trials] == ["local-s0", "local-s1", "mfed-s0", "mfed-s1", "mfed_gn-s0", "mfed_gn-s1"]
    assert [t.labels["seed"] for t in trials] == [0, 1] * 3
    assert [t.reference for t in trials] == [True, True, False, False, False, False]
    gn = trials[-1].overrides
    assert "model.encoder.norm=group" in gn and "seed=1" in gn and "aggregation=mfed" in gn
    # the benchmark's own overrides apply, the command line's win (rounds=1 over quick's 5)
    assert "data.pool.length=48" in gn and "data.pool.length=960" not in gn
    assert "federation.rounds=1" in gn and "federation.rounds=5" not in gn
    assert all(t.clients == 4 for t in trials)


def test_settings_make_one_comparison_each():
    grid = {"data.pool.max_items": [2, 3]}
    trials = plan_benchmark(bench(strategies=["local", "mfed"], seeds=[3], settings=grid), BASE)
    assert [t.name for t in trials] == [
        "data.pool.max_items-2_local-s3", "data.pool.max_items-2_mfed-s3",
        "data.pool.max_items-3_local-s3", "data.pool.max_items-3_mfed-s3",
    ]  # fmt: skip
    assert {t.labels["setting"] for t in trials} == {"data.pool.max_items-2", "data.pool.max_items-3"}
    assert "data.pool.max_items=3" in trials[-1].overrides
    with pytest.raises(ValueError, match="benchmark.settings varies data.pool.length; leave it off"):
        plan_benchmark(bench(strategies=["local", "mfed"], seeds=[3], settings={"data.pool.length": [48]}), BASE)


@pytest.mark.parametrize(
    ("changes", "base", "message"),
    [
        ({}, ["aggregation=fedavg"], "a benchmark picks the strategies and seeds itself"),
        ({}, ["backend=serial"], "a benchmark runs every run as a Ray Tune trial"),
        ({"seeds": [0, 0]}, [], r"benchmark.seeds must be distinct integers"),
        ({"strategies": ["local", "mfed"], "compare": "ditto"}, [], r"benchmark.compare=ditto is not among"),
        ({"strategies": ["mfed"], "reference": "local"}, [], r"benchmark.reference=local is not among"),
        ({"strategies": ["local", "mfed", "nope"]}, [], "there is no configs/aggregation/nope.yaml"),
        ({"strategies": ["local", "mfed", {"x": ["seed=1"]}]}, [], "'x' must pick a strategy: add aggregation=<name>"),
    ],
)
def test_bad_benchmarks_are_refused_before_anything_runs(changes, base, message):
    from hydra.errors import MissingConfigException

    from mfed.schema import error_line

    with pytest.raises((ValueError, MissingConfigException)) as err:
        plan_benchmark(bench(**changes), [*BASE, *base])
    assert message in error_line(err.value)


def test_strategy_entries_and_override_merging():
    assert strategy_runs(["mfed", {"v": ["aggregation=mfed", "aggregation.mu=0"]}]) == {
        "mfed": ["aggregation=mfed"], "v": ["aggregation=mfed", "aggregation.mu=0"],
    }  # fmt: skip
    with pytest.raises(ValueError, match="'mfed' appears twice"):
        strategy_runs(["mfed", "mfed"])
    assert merge_overrides(["a=1", "b=2"], ["+a=3"], ["~c"]) == ["b=2", "+a=3", "~c"]


# A fabricated benchmark: strategies local (the reference) and mfed on three seeds; two tasks, one
# client each. seg's mIoU (higher is better) and dep's rmse (lower is better) are known per seed.
SEG = {"local": [20.0, 22.0, 24.0], "mfed": [23.0, 24.0, 27.5]}
DEP = {"local": [1.0, 1.2, 1.1], "mfed": [0.9, 1.1, 1.1]}
TASKS = {"seg": {"headline": "mIoU", "higher_is_better": {"mIoU": True}},
         "dep": {"headline": "rmse", "higher_is_better": {"rmse": False}}}  # fmt: skip


def fabricate(tmp_path, strategy, seed, old_format=False):
    """A run folder; ``old_format``: as written before clients could hold several tasks (no client_tasks)."""
    seg, dep = SEG[strategy][seed], DEP[strategy][seed]
    final = {"round": 2.0, "test/seg/mIoU": seg, "test/dep/rmse": dep, "val/seg/mIoU": seg - 1}
    if old_format:
        final |= {"client/seg-0/test_mIoU": seg, "client/dep-0/test_rmse": dep}
    else:
        final |= {"client/seg-0/seg/test_mIoU": seg, "client/dep-0/dep/test_rmse": dep,
                  "client/seg-0/seg/mIoU": seg - 1, "client/seg-0/train_loss": 0.5, "agg/lam": 0.1}  # fmt: skip
    history = [
        {"round": 1.0, "val/seg/mIoU": seg - 5, "train/seg/loss": 2.0, "comm/clients": 2.0,
         "comm/bytes_up": 400.0, "comm/bytes_up_encoder": 300.0, "comm/bytes_down": 400.0, "comm/private_bytes": 0.0},
        {**final, "comm/clients": 2.0, "comm/bytes_up": 400.0, "comm/bytes_up_encoder": 300.0,
         "comm/bytes_down": 400.0, "comm/private_bytes": 0.0},
    ]  # fmt: skip
    folder = tmp_path / f"{strategy}-s{seed}"
    folder.mkdir()
    summary = {"status": "completed", "tasks": TASKS, "clients": ["seg-0", "dep-0"], "final": final, "error": None,
               "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2.13.0", "torch_threads": 1}}  # fmt: skip
    if not old_format:
        summary["client_tasks"] = {"seg-0": ["seg"], "dep-0": ["dep"]}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "history.json").write_text(json.dumps(history))
    labels = {"strategy": strategy, "seed": seed, "setting": "default"}
    return Trial(folder.name, (f"aggregation={strategy}", f"seed={seed}"), 2, strategy == "local", 1, labels)


@pytest.mark.parametrize("old_format", [False, True], ids=["client_tasks", "old-format"])
def test_the_report_holds_intervals_paired_tests_and_delta_m_computed_independently(tmp_path, old_format):
    # Prepare
    trials = [fabricate(tmp_path, s, k, old_format) for s in ("local", "mfed") for k in range(3)]
    # Execute
    records = collect_runs(trials, tmp_path, {}, reference="local")
    summary = summarise(records, compare="mfed", confidence=0.95)
    # Assert: delta_m of each mfed run against local of the same seed, by hand
    for k, r in enumerate(records[3:]):
        seg = (SEG["mfed"][k] - SEG["local"][k]) / SEG["local"][k] * 100
        dep = -(DEP["mfed"][k] - DEP["local"][k]) / DEP["local"][k] * 100
        assert r["delta_m"] == pytest.approx((seg + dep) / 2)
        assert r["delta_m"] == pytest.approx(delta_m({"a": SEG["mfed"][k], "b": DEP["mfed"][k]},
                                                     {"a": SEG["local"][k], "b": DEP["local"][k]},
                                                     {"a": False, "b": True}))  # fmt: skip
    # the per-strategy interval is scipy's Student-t interval over the seeds
    seg = summary["settings"]["default"]["strategies"]["mfed"]["seg"]
    low, high = sps.t.interval(0.95, 2, loc=np.mean(SEG["mfed"]), scale=sps.sem(SEG["mfed"]))
    assert (seg["mean"], seg["low"], seg["high"], seg["n"]) == pytest.approx((np.mean(SEG["mfed"]), low, high, 3))
    # the paired comparison is scipy's paired t-test on the same seeds
    against = summary["settings"]["default"]["against"]["local"]
    assert against["seg"]["p"] == pytest.approx(sps.ttest_rel(SEG["mfed"], SEG["local"]).pvalue)
    assert against["dep"]["mean"] == pytest.approx(np.mean(np.subtract(DEP["mfed"], DEP["local"])))
    assert [t["name"] for t in summary["tasks"]] == ["seg", "dep"]  # the runs' order, not alphabetical
    assert records[3]["task_order"] == ["seg", "dep"]
    key = "seg-0/test_mIoU" if old_format else "seg-0/seg/test_mIoU"
    assert records[3]["clients"] == {key: 23.0, key.replace("seg", "dep").replace("mIoU", "rmse"): 0.9}
    assert records[0]["comm"] == {"bytes_up": 200.0, "bytes_up_encoder": 150.0, "bytes_down": 200.0,
                                  "private_bytes": 0.0}  # per client per round  # fmt: skip


def test_results_files_say_what_ran_and_mark_directions(tmp_path):
    trials = [fabricate(tmp_path, s, k) for s in ("local", "mfed") for k in range(3)]
    trials.append(Trial("broken", (), 2, labels={"strategy": "mfed", "seed": 9, "setting": "default"}))  # no folder
    records = collect_runs(trials, tmp_path, {"broken": "RayTaskError: boom"}, reference="local")
    results = {
        "benchmark": "fab", "overrides": ["data=shapes"], "strategies": ["local", "mfed"], "seeds": [0, 1, 2],
        "reference": "local", "aliases": {"local": "solo"},
        "model_bytes": {"default": {"encoder": 300, "decoders": {"seg": 60, "dep": 40}, "full": 400}},
        **summarise(records, "mfed", 0.95), "runs": records,
    }  # fmt: skip
    write_results(results, tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "| seg mIoU ↑ | dep rmse ↓ | Δm vs local % ↑ |" in text
    assert "| local (= solo) | 22.00 ± 4.97 |" in text  # 22 ± t(0.975, 2) * 2 / sqrt(3)
    assert "| **mfed** |" in text and "seeds 0, 1, 2" in text and "`data=shapes`" in text
    assert "Machine: Test CPU (2 cores), torch 2.13.0; 1 thread per client." in text
    assert "<br>p 0.0" in text and ", Holm 0." in text and "<br>d_z " in text
    assert "| 0,1,2 (1 failed) |" in text and "broken: failed: RayTaskError: boom" in text
    assert "| 0.2 KB | 0.1 KB | 0.2 KB | 0.50x |" in text  # 200 B up + 200 B down against 2 x 400 B
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {r["strategy"] for r in saved["runs"]} == {"local", "mfed"} and len(saved["runs"]) == 7
    assert saved["runs"][-1]["status"] == "failed"
    for png in ("curves_seg.png", "curves_dep.png", "delta_m.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    assert markdown(saved, images=False).count("![") == 0


# A mixed federation: a-0 holds task a (acc, higher is better), b-0 holds b (rmse, lower is better),
# a+b-0 holds both; each client's headline test metrics of the run and of its Local reference.
MIXED_TASKS = {"a": {"headline": "acc", "higher_is_better": {"acc": True}},
               "b": {"headline": "rmse", "higher_is_better": {"rmse": False}}}  # fmt: skip
CLIENT_TASKS = {"a+b-0": ["b", "a"], "a-0": ["a"], "b-0": ["b"]}
LOCAL = {"a-0": {"a": 0.50}, "b-0": {"b": 2.0}, "a+b-0": {"a": 0.40, "b": 1.6}}
RUN = {"a-0": {"a": 0.55}, "b-0": {"b": 1.5}, "a+b-0": {"a": 0.50, "b": 2.0}}


def mixed_summary(values):
    final = {f"client/{cid}/{task}/test_{MIXED_TASKS[task]['headline']}": v
             for cid, by_task in values.items() for task, v in by_task.items()}  # fmt: skip
    final |= {"client/a+b-0/a/acc": 0.1, "client/a+b-0/train_loss": 1.0, "agg/lam": 0.5, "test/a/acc": 0.3}
    return {"status": "completed", "tasks": MIXED_TASKS, "clients": list(CLIENT_TASKS), "client_tasks": CLIENT_TASKS,
            "final": final, "error": None}  # fmt: skip


def test_delta_m_of_a_mixed_federation_is_per_client_over_its_tasks_then_over_clients():
    # a-0:   (0.55 - 0.50) / 0.50 * 100 = +10
    # b-0:  -(1.5 - 2.0) / 2.0 * 100 = +25
    # a+b-0: a: (0.50 - 0.40) / 0.40 * 100 = +25, b: -(2.0 - 1.6) / 1.6 * 100 = -25: mean 0
    # over clients: (10 + 25 + 0) / 3 = 11.666...  (not the mean over the 4 (client, task) pairs, 8.75)
    assert client_delta(mixed_summary(RUN), mixed_summary(LOCAL)) == pytest.approx(35 / 3)
    assert client_delta(mixed_summary(LOCAL), mixed_summary(LOCAL)) == 0.0
    assert client_tasks(mixed_summary(RUN)) == CLIENT_TASKS
    # summary.json is written with sorted keys: the clients come in the run's order, summary["clients"]
    written = json.loads(json.dumps({**mixed_summary(RUN), "clients": ["b-0", "a-0", "a+b-0"]}, sort_keys=True))
    assert list(client_tasks(written)) == ["b-0", "a-0", "a+b-0"]
    # a value missing on either side, or a zero reference: no delta_m
    missing = mixed_summary(RUN)
    del missing["final"]["client/a+b-0/b/test_rmse"]
    assert client_delta(missing, mixed_summary(LOCAL)) is None
    assert client_delta(mixed_summary(RUN), missing) is None
    assert client_delta(mixed_summary(RUN), mixed_summary({**LOCAL, "a-0": {"a": 0.0}})) is None


def test_two_tasks_of_one_client_with_the_same_headline_name_both_count():
    tasks = {t: {"headline": "rmse", "higher_is_better": {"rmse": False}} for t in ("c", "d")}

    def summary(c, d):
        final = {"client/c+d-0/c/test_rmse": c, "client/c+d-0/d/test_rmse": d}
        return {"tasks": tasks, "clients": ["c+d-0"], "client_tasks": {"c+d-0": ["c", "d"]}, "final": final}

    # c: -(1.0 - 2.0) / 2.0 * 100 = +50, d: -(2.5 - 2.0) / 2.0 * 100 = -25: (50 - 25) / 2 = 12.5
    assert client_delta(summary(1.0, 2.5), summary(2.0, 2.0)) == pytest.approx(12.5)


def test_an_old_format_summary_still_gives_the_old_delta_m():
    # no client_tasks: the task is read from the id, the key is client/<id>/test_<headline>
    def summary(seg, dep):
        final = {"client/seg-0/test_mIoU": seg, "client/seg-1/test_mIoU": seg + 2, "client/dep-0/test_rmse": dep}
        return {"tasks": TASKS, "clients": ["seg-0", "seg-1", "dep-0"], "final": final}

    assert client_tasks(summary(0, 0)) == {"seg-0": ["seg"], "seg-1": ["seg"], "dep-0": ["dep"]}
    # seg-0: (24 - 20) / 20 * 100 = +20; seg-1: (26 - 22) / 22 * 100 = +18.18...
    # dep-0: -(0.9 - 1.2) / 1.2 * 100 = +25
    assert client_delta(summary(24.0, 0.9), summary(20.0, 1.2)) == pytest.approx((20 + 400 / 22 + 25) / 3)


def test_a_mixed_benchmark_run_records_its_clients_task_order_and_delta_m(tmp_path):
    trials = []
    for strategy, values in (("local", LOCAL), ("mfed", RUN)):
        folder = tmp_path / f"{strategy}-s0"
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps(mixed_summary(values)))
        (folder / "history.json").write_text(json.dumps([{"round": 1.0, "diag/a+b/update_norm": 2.0}]))
        labels = {"strategy": strategy, "seed": 0, "setting": "default"}
        trials.append(Trial(folder.name, (f"aggregation={strategy}", "seed=0"), 3, strategy == "local", 1, labels))
    local, mfed = collect_runs(trials, tmp_path, {}, reference="local")
    assert local["delta_m"] == 0.0 and mfed["delta_m"] == pytest.approx(35 / 3)
    assert mfed["task_order"] == ["b", "a"]  # first held, client by client
    assert mfed["clients"] == {"a+b-0/a/test_acc": 0.5, "a+b-0/b/test_rmse": 2.0, "a-0/a/test_acc": 0.55,
                               "b-0/b/test_rmse": 1.5}  # fmt: skip
    assert mfed["curves"] == {"diag/a+b/update_norm": [[1.0, 2.0]]}
    summary = summarise([local, mfed], compare="mfed", confidence=0.95)
    assert [t["name"] for t in summary["tasks"]] == ["b", "a"]
    assert summary["settings"]["default"]["strategies"]["mfed"]["delta_m"]["mean"] == pytest.approx(35 / 3)


def entry(eps, dm):
    """A strategy's summary in one setting: the epsilon it reached and its delta_m."""
    return {"epsilon": eps, "delta_m": {"mean": dm, "low": dm - 1, "high": dm + 1, "n": 3}}


def test_a_privacy_benchmark_orders_its_settings_by_epsilon_and_plots_the_trade_off(tmp_path):
    from mfed.sweeps.plots import draw, privacy_data
    from mfed.sweeps.results import privacy_levels

    results = {
        "benchmark": "privacy", "strategies": ["local", "mfed"], "reference": "local", "seeds": [0, 1, 2],
        "confidence": 0.95,
        "settings": {
            "dp_eps2": {"strategies": {"local": entry(None, 0.0), "mfed": entry(1.99, -40.0)}},
            "none": {"strategies": {"local": entry(None, 0.0), "mfed": entry(None, 5.0)}},
            "dp_eps8": {"strategies": {"local": entry(None, 0.0), "mfed": entry(7.97, -20.0)}},
        },
    }  # fmt: skip
    assert [s for s, _ in privacy_levels(results)] == ["none", "dp_eps8", "dp_eps2"]
    draw(privacy_data(results), tmp_path / "privacy.png")
    assert (tmp_path / "privacy.png").stat().st_size > 1000
    results["settings"] = {"none": results["settings"]["none"]}
    assert privacy_levels(results) == []  # no DP: no trade-off to draw


def test_dp_strategies_across_another_setting_are_drawn_by_setting_not_as_a_trade_off(tmp_path):
    from mfed.sweeps.entries import privacy_levels, private_by_setting
    from mfed.sweeps.plots import by_setting_data, draw

    results = {
        "benchmark": "privacy_scale", "strategies": ["mfed", "mfed_eps8"], "reference": "mfed", "seeds": [0, 1, 2],
        "confidence": 0.95,
        "settings": {f"federation.fraction-{f}": {"strategies": {"mfed": entry(None, 0.0), "mfed_eps8": entry(e, d)}}
                     for f, e, d in (("0.01", 7.99, -40.0), ("0.1", 7.98, -20.0), ("1.0", 7.97, -5.0))},
    }  # fmt: skip
    assert privacy_levels(results) == [] and private_by_setting(results)  # every setting reaches epsilon 8
    draw(by_setting_data(results), tmp_path / "by_setting.png")
    assert (tmp_path / "by_setting.png").stat().st_size > 1000


def test_a_run_that_withholds_per_client_figures_is_compared_task_by_task():
    from mfed.sweeps.report import client_delta

    tasks = {"seg": {"headline": "mIoU", "higher_is_better": {"mIoU": True}},
             "depth": {"headline": "rmse", "higher_is_better": {"rmse": False}}}  # fmt: skip
    private = {"tasks": tasks, "clients": ["seg-0", "depth-0"], "final": {"test/seg/mIoU": 9.0, "test/depth/rmse": 2.5}}
    local = {"tasks": tasks, "clients": ["seg-0", "depth-0"], "final": {
        "test/seg/mIoU": 10.0, "test/depth/rmse": 2.0, "client/seg-0/seg/test_mIoU": 10.0}}  # fmt: skip
    # (9 - 10) / 10 = -10 %, depth lower is better: -(2.5 - 2) / 2 = -25 %; mean -17.5 %
    assert client_delta(private, local) == pytest.approx(-17.5)


def test_holm_adjusts_over_the_settings_family_and_a_diverged_seed_is_shown(tmp_path):
    trials = [fabricate(tmp_path, s, k) for s in ("local", "mfed") for k in range(3)]
    diverged = tmp_path / "mfed-s1" / "summary.json"  # seed 1 of mfed diverged: its metrics are NaN
    summary = json.loads(diverged.read_text())
    diverged.write_text(json.dumps({**summary, "status": "diverged", "error": "loss not finite in round 2"}))
    records = collect_runs(trials, tmp_path, {}, reference="local")
    section = summarise(records, "mfed", 0.95)["settings"]["default"]
    entry = section["strategies"]["mfed"]
    assert entry["seeds"] == [0, 2] and entry["runs"] == {"completed": 2, "diverged": 1} and entry["failed"] == 1
    against = section["against"]["local"]
    # the family: seg, dep and delta_m against local (3 tests) on the 2 seeds both completed
    raw = [sps.ttest_rel([SEG["mfed"][k] for k in (0, 2)], [SEG["local"][k] for k in (0, 2)]).pvalue,
           sps.ttest_rel([DEP["mfed"][k] for k in (0, 2)], [DEP["local"][k] for k in (0, 2)]).pvalue,
           against["delta_m"]["p"]]  # fmt: skip
    assert [against[k]["p"] for k in ("seg", "dep")] == pytest.approx(raw[:2])
    order = np.argsort(raw)
    expected = np.maximum.accumulate([min(1.0, (3 - i) * raw[j]) for i, j in enumerate(order)])
    assert [against[k]["p_holm"] for k in np.array(["seg", "dep", "delta_m"])[order]] == pytest.approx(expected)
    results = {
        "benchmark": "fab", "overrides": [], "strategies": ["local", "mfed"], "seeds": [0, 1, 2],
        "reference": "local", "model_bytes": {}, **summarise(records, "mfed", 0.95), "runs": records,
    }  # fmt: skip
    text = markdown(results, images=False)
    assert "| 0,2 (1 diverged) |" in text and "mfed-s1: diverged: loss not finite in round 2" in text


def test_the_published_json_alone_regenerates_the_same_report(tmp_path):
    from mfed.cli import main

    # Prepare: a benchmark's results.json, its statistics then removed: only what ran and the runs remain
    trials = [fabricate(tmp_path, s, k) for s in ("local", "mfed") for k in range(3)]
    records = collect_runs(trials, tmp_path, {}, reference="local")
    results = {
        "benchmark": "fab", "overrides": ["data=shapes"], "strategies": ["local", "mfed"], "seeds": [0, 1, 2],
        "reference": "local", "compare": "mfed", "model_bytes": {}, **summarise(records, "mfed", 0.95), "runs": records,
    }  # fmt: skip
    write_results(results, tmp_path)
    raw = json.loads((tmp_path / "results.json").read_text())
    raw["settings"] = {"default": {"strategies": {}, "compare": "mfed", "against": {}}}
    published = tmp_path / "docs"
    published.mkdir()
    (published / "fab.json").write_text(json.dumps(raw))
    # Execute
    assert main(["results", str(published / "fab.json")]) == 0
    # Assert: the same tables, PNGs named after the benchmark, no machine path in the runs
    text = (published / "fab.md").read_text()
    assert text == (tmp_path / "results.md").read_text().replace("](curves_", "](fab_curves_").replace(
        "](delta_m", "](fab_delta_m"
    )
    assert (published / "fab_delta_m.png").exists() and (published / "fab_curves_seg.png").exists()
    assert all(r["out_dir"] == r["trial"] for r in json.loads((published / "fab.json").read_text())["runs"])
    assert main(["results", str(tmp_path / "nothing.json")]) == 2


def test_a_mistyped_strategy_is_named_not_blamed_on_the_reference():
    with pytest.raises(ValueError, match=r"benchmark.strategies: 'locl': there is no configs/aggregation/locl.yaml"):
        plan_benchmark(bench(strategies=["locl", "mfed"]), BASE)  # reference local is then missing too


def test_a_reference_per_strategy_takes_each_delta_m_against_its_own_reference(tmp_path):
    # Prepare: mfed is local's reference here (the mapping), not the other way round
    trials = [fabricate(tmp_path, s, k) for s in ("local", "mfed") for k in range(3)]
    # Execute
    records = collect_runs(trials, tmp_path, {}, reference={"local": "mfed"})
    # Assert: seed 0 by hand: seg (20 - 23) / 23, depth -(1.0 - 0.9) / 0.9 (lower is better), mean over the 2 clients
    local0 = next(r for r in records if r["strategy"] == "local" and r["seed"] == 0)
    assert local0["delta_m"] == pytest.approx(100 * ((20 - 23) / 23 - (1.0 - 0.9) / 0.9) / 2)
    assert all(r["delta_m"] == 0 for r in records if r["strategy"] == "mfed")  # the reference against itself
    bench = OmegaConf.create({"strategies": ["local", "mfed"], "seeds": [0], "reference": {"local": "fedavg"}})
    with pytest.raises(ValueError, match=r"benchmark.reference.local=fedavg is not among benchmark.strategies"):
        plan_benchmark(bench, [])
