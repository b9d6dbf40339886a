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
