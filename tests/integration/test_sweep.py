"""A two-trial sweep on the shared local Ray, scheduled by Ray Tune."""

import json

import pytest

from mfed.config import load_config
from mfed.sweeps.sweep import run_sweep

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize("per_actor", ["1", "auto"])
def test_two_trial_sweep_writes_ranked_results_with_delta_m(ray_cluster, tmp_path, per_actor):
    # Prepare: the quick sweep (M-Fed + its Local reference) on the tiny config, one actor per client or pooled
    from tests.conftest import TINY

    base = [o for o in TINY if o not in ("backend=serial",)] + ["task_mix=seg_depth", "federation.rounds=1"]
    base += ["backend=ray", f"backend.clients_per_actor={per_actor}"]
    sweep = load_config(["sweep=quick", *base]).sweep
    # Execute
    rows = run_sweep(sweep, base, tmp_path)
    # Assert
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["trial"] for r in saved] == [r["trial"] for r in rows]
    assert {r["trial"] for r in saved} == {"aggregation-mfed", "aggregation-local"}
    by_name = {r["trial"]: r for r in saved}
    assert by_name["aggregation-local"]["reference"] and by_name["aggregation-local"]["delta_m"] == 0.0
    assert isinstance(by_name["aggregation-mfed"]["delta_m"], float)
    assert set(by_name["aggregation-mfed"]["test"]) == {"semseg", "depth"}
    assert (tmp_path / "sweep.md").read_text().count("| aggregation-") == 2
    assert (tmp_path / "sweep.png").is_file()
    # every trial wrote its own run, in the sweep's W&B group
    config = (tmp_path / "aggregation-mfed" / "config.yaml").read_text()
    assert "group: quick" in config and "num_cpus_per_client: " in config
    # 4 clients in a 1-CPU share per trial: four resident actors, or one hosting all four
    assert f"clients_per_actor: {1 if per_actor == '1' else 4}" in config


def test_a_benchmark_runs_every_strategy_on_every_seed_and_matches_the_serial_backend(ray_cluster, tmp_path):
    # Prepare: three strategies (the centralised reference among them) on two seeds, tiny runs
    from omegaconf import OmegaConf

    from mfed.run import build
    from mfed.sweeps.benchmark import run_benchmark
    from tests.conftest import TINY

    base = [o for o in TINY if o != "backend=serial"] + ["task_mix=seg_depth", "federation.rounds=1"]
    bench = load_config(["benchmark=quick"]).benchmark
    OmegaConf.update(bench, "strategies", ["local", "mfed", "centralised"], merge=False)
    OmegaConf.update(bench, "seeds", [0, 1], merge=False)
    # Execute
    results = run_benchmark(bench, base, tmp_path)
    # Assert: 3 x 2 completed runs, each named and grouped in its config, and the report's tables
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [(r["strategy"], r["seed"], r["status"]) for r in saved["runs"]] == [
        (s, k, "completed") for s in ("local", "mfed", "centralised") for k in (0, 1)
    ]
    config = (tmp_path / "mfed-s1" / "config.yaml").read_text()
    assert "name: mfed-s1" in config and "group: quick" in config and "seed: 1" in config
    table = results["settings"]["default"]["strategies"]
    assert table["local"]["delta_m"]["mean"] == 0.0 and table["mfed"]["semseg"]["n"] == 2
    assert set(results["settings"]["default"]["against"]) == {"local", "centralised"}
    assert "| **mfed** |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "delta_m.png").is_file() and (tmp_path / "curves_semseg.png").is_file()
    # a run of the benchmark equals the same run on the serial backend in this process
    run = next(r for r in saved["runs"] if r["trial"] == "mfed-s1")
    overrides = [o for o in run["overrides"] if not o.startswith("backend")] + ["backend=serial"]
    serial = build(load_config([*overrides, f"out_dir={tmp_path / 'serial'}", "logger=none"])).run()[-1]
    assert {k: serial[f"test/{k}"] for k in run["test"]} == run["test"]


def test_a_stopped_benchmark_continues_in_its_out_dir(ray_cluster, tmp_path):
    # Prepare: a two-round benchmark whose local-s0 an earlier command left stopped after round 1
    from omegaconf import OmegaConf

    from mfed.run import build, run, start
    from mfed.sweeps.benchmark import plan_benchmark, run_benchmark
    from mfed.sweeps.plan import trial_overrides
    from tests.conftest import TINY

    base = [o for o in TINY if o != "backend=serial"] + ["task_mix=seg_depth"]
    bench = load_config(["benchmark=quick"]).benchmark
    OmegaConf.update(bench, "strategies", ["local", "mfed"], merge=False)
    OmegaConf.update(bench, "seeds", [0], merge=False)
    local = plan_benchmark(bench, base)[0]
    planned = trial_overrides(local, [], tmp_path, "quick", 1.0, 1)
    serial = [o for o in planned if not o.startswith("backend")] + ["backend=serial"]

    class StopAfterRound1:
        def on_round_end(self, driver, row):
            raise KeyboardInterrupt

        def on_start(self, driver): ...

        def on_end(self, driver): ...

    cfg = load_config(serial)
    driver = start(build(cfg), cfg)
    driver.callbacks = [*driver.callbacks, StopAfterRound1()]
    with pytest.raises(KeyboardInterrupt):
        driver.run()
    assert json.loads((tmp_path / "local-s0" / "summary.json").read_text())["status"] == "interrupted"
    # Execute: the same benchmark in the same out_dir
    first = run_benchmark(bench, base, tmp_path)
    # Assert: local-s0 resumed at round 2 and ends as the uninterrupted run does; mfed-s0 ran afresh
    assert "resuming from round 2" in (tmp_path / "local-s0" / "console.log").read_text()
    whole = run(load_config([*serial, f"out_dir={tmp_path / 'whole'}"]))[-1]
    runs = {r["trial"]: r for r in first["runs"]}
    assert runs["local-s0"]["test"] == {k[len("test/") :]: v for k, v in whole.items() if k.startswith("test/")}
    assert runs["mfed-s0"]["status"] == "completed"
    # Then: once more, every run is kept as it is and the report is the same
    kept = {t: (tmp_path / t / "summary.json").stat().st_mtime_ns for t in runs}
    again = run_benchmark(bench, base, tmp_path)
    assert {t: (tmp_path / t / "summary.json").stat().st_mtime_ns for t in runs} == kept
    assert json.dumps(again["settings"]) == json.dumps(first["settings"])  # NaN (one seed: no interval) too


def test_a_tuned_benchmark_chooses_on_validation_then_compares_with_the_choice(ray_cluster, tmp_path):
    # Prepare: two strategies, two learning rates each on a tuning seed, then one comparison seed
    from omegaconf import OmegaConf

    from mfed.sweeps.benchmark import run_benchmark
    from tests.conftest import TINY

    base = [o for o in TINY if o != "backend=serial"] + ["task_mix=seg_depth", "federation.rounds=1"]
    bench = load_config(["benchmark=quick"]).benchmark
    OmegaConf.update(bench, "strategies", ["local", "mfed"], merge=False)
    OmegaConf.update(bench, "seeds", [0], merge=False)
    tune = {"samples": 2, "seeds": [100], "space": {"all": {"optimizer.lr": [1e-3, 1e-2]}}}
    OmegaConf.update(bench, "tune", tune, merge=False, force_add=True)
    # Execute
    results = run_benchmark(bench, base, tmp_path)
    # Assert: 2 tuning runs per strategy, on the tuning seed; the comparison ran with each one's choice
    tuning = results["tuning"]["default"]
    assert {s: e["budget"] for s, e in tuning.items()} == {"local": 2, "mfed": 2}
    for strategy, entry in tuning.items():
        for i in range(2):
            config = (tmp_path / f"tune-default_{strategy}-c{i}-s100" / "config.yaml").read_text()
            assert "seed: 100" in config and f"lr: {entry['configs'][i]['values']['optimizer.lr']}" in config
        run = next(r for r in results["runs"] if r["strategy"] == strategy)
        assert f"optimizer.lr={entry['chosen']['optimizer.lr']}" in run["overrides"]
    # the choice is the better mean rank of the two runs' validation headlines (ties: the first)
    for strategy, entry in tuning.items():
        val = [json.loads((tmp_path / f"tune-default_{strategy}-c{i}-s100" / "summary.json").read_text())["final"]
               for i in range(2)]  # fmt: skip
        wins = [(v["val/semseg/mIoU"] > w["val/semseg/mIoU"]) + (v["val/depth/rmse"] < w["val/depth/rmse"])
                for v, w in (val, val[::-1])]  # fmt: skip
        assert entry["chosen"] == entry["configs"][1 if wins[1] > wins[0] else 0]["values"]
    assert "**Tuned on validation** (2 runs per strategy" in (tmp_path / "results.md").read_text()
