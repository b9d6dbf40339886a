import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from mfed.sweeps.plan import Trial, actor_layout, cpus_per_actor, expand_grid, plan_trials, reference_overrides
from tests.conftest import TINY


def test_expand_grid_is_the_cartesian_product():
    combos = expand_grid({"task_mix": ["a", "b"], "aggregation": ["mfed", "fedavg"], "seed": 3})
    assert len(combos) == 4 and ("task_mix=b", "aggregation=fedavg", "seed=3") in combos
    with pytest.raises(ValueError, match="sweep.grid is empty"):
        expand_grid({})
    with pytest.raises(ValueError, match="sweep.grid.seed has no values"):
        expand_grid({"seed": []})


def test_plan_adds_the_local_references_and_validates_every_trial():
    sweep = OmegaConf.create(
        {"grid": {"aggregation": ["mfed", "fedavg"], "task_mix": ["seg_depth"]}, "reference": "local"}
    )
    trials = plan_trials(sweep, list(TINY))
    assert [t.reference for t in trials] == [False, False, True]
    assert trials[-1].overrides == ("aggregation=local", "task_mix=seg_depth")
    assert all(t.clients == 4 for t in trials)  # 2 tasks x 2 clients
    bad = OmegaConf.create({"grid": {"federation.rounds": [0]}, "reference": None})
    with pytest.raises(ValueError, match="federation.rounds must be >= 1"):
        plan_trials(bad, list(TINY))


def test_a_mu_sweep_shares_one_local_reference_without_mu():
    sweep = OmegaConf.create({"grid": {"aggregation.mu": [0.0, 0.1]}, "reference": "local"})
    trials = plan_trials(sweep, ["task_mix=seg_depth", *TINY])
    assert [t.overrides for t in trials] == [("aggregation.mu=0.0",), ("aggregation.mu=0.1",), ("aggregation=local",)]
    assert reference_overrides(("aggregation=mfed", "aggregation.mu=0.1", "seed=1"), "local") == (
        "aggregation=local",
        "seed=1",
    )


def test_cpu_share_fits_the_concurrent_trials():
    trials = [Trial("a", (), 6), Trial("b", (), 4)]
    share = cpus_per_actor(trials, total_cpus=2.0, max_concurrent=2)
    assert share == 0.16 and 2 * (0.01 + 6 * share) <= 2.0
    with pytest.raises(ValueError, match="lower sweep.max_concurrent, or set backend.clients_per_actor=auto"):
        cpus_per_actor([Trial("a", (), 300)], total_cpus=2.0, max_concurrent=2)


def test_pooled_trials_get_one_bundle_per_actor_not_per_client():
    # 300 clients: auto on a 1-CPU share is one actor of all 300; K=64 is 5 actors (ceil(300 / 64))
    auto, k64 = Trial("a", (), 300, per_actor="auto"), Trial("b", (), 300, per_actor=64)
    assert actor_layout(auto, cpus_per_trial=1.0) == (300, 1)
    assert actor_layout(auto, cpus_per_trial=4.0) == (75, 4)
    assert actor_layout(k64, cpus_per_trial=1.0) == (64, 5)
    assert actor_layout(Trial("c", (), 5, per_actor="auto"), cpus_per_trial=8.0) == (1, 5)  # at most one per client
    share = cpus_per_actor([auto, k64], total_cpus=2.0, max_concurrent=2)
    assert share == 0.19 and 0.01 + 5 * share <= 1.0  # the largest trial (5 actors) fits its 1-CPU share


def test_sweeps_import_ray_only_once_they_start_it():
    # The embedded Ray chooses its authentication mode before Ray is first imported (or Ray warns):
    # nothing a sweep or benchmark loads before init_ray may import it
    code = (
        "import sys; import mfed.cli, mfed.sweeps.schedule, mfed.sweeps.benchmark, mfed.sweeps.sweep, "
        "mfed.sweeps.continuation; print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
