"""Running planned trials as Ray Tune trials on the cluster, one console line per finished trial (:mod:`.progress`).

Each trial's own console (its round lines and final table) goes to ``<trial dir>/console.log``
rather than to the sweep's console, where concurrent trials would interleave; the sweep prints
one line as each trial ends (its status, time and headline test metrics) and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mfed.config import load_config
from mfed.sweeps.plan import DRIVER_CPU, Trial, actor_layout, cpus_per_actor, per_trial_cpus, trial_overrides

log = logging.getLogger(__name__)


def init_ray() -> None:
    """Join the cluster of ``RAY_ADDRESS`` (set inside a Ray job), else start an embedded local Ray.

    Ray is imported here, not before: the embedded one sets its authentication mode first.
    """
    loaded = sys.modules.get("ray")
    if loaded is not None and loaded.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        import ray

        ray.init(include_dashboard=False)
    else:
        from mfed.federation.local_ray import init_local_ray

        init_local_ray()


def run_trial(config: dict[str, Any], plans: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Ray Tune function trainable: one federated run, its console in ``console.log``; returns its final metrics."""
    from mfed.run import build, start

    cfg = load_config(plans[config["trial"]])
    driver = start(build(cfg), cfg)  # claims the (fresh) folder before console.log goes into it
    with (
        open(Path(str(cfg.out_dir)) / "console.log", "a") as f,
        contextlib.redirect_stdout(f),
        contextlib.redirect_stderr(f),
    ):
        history = driver.run()
    final = {k: v for k, v in history[-1].items() if k.startswith(("val/", "test/")) and v == v}
    return {**final, "out_dir": str(cfg.out_dir)}


def run_trials(
    trials: Sequence[Trial], base: Sequence[str], out_dir: Path, group: str, max_concurrent: int
) -> dict[str, str]:
    """Run every trial with Ray Tune, ``max_concurrent`` at a time; return ``{trial: error}`` of those that failed.

    Trial ``t`` writes its run into ``out_dir / t.name``, named ``t.name`` in W&B group ``group``. What
    an earlier command left in ``out_dir`` is kept, resumed or moved aside (:mod:`mfed.sweeps.continuation`).
    """
    from mfed.sweeps.continuation import find_earlier

    earlier = find_earlier(trials, base, out_dir, group)  # before Ray starts: other settings stop the command here
    found = earlier.line(out_dir)
    if found:
        print(found, flush=True)
    trials = [t for t in trials if t.name not in earlier.kept]
    if not trials:
        return {}
    init_ray()
    import ray
    from ray import tune

    from mfed.sweeps.progress import TrialLines

    total = float(ray.cluster_resources().get("CPU", 0))
    cpus = cpus_per_actor(trials, total, max_concurrent)
    per_trial = per_trial_cpus(trials, total, max_concurrent)
    layouts = {t.name: actor_layout(t, per_trial) for t in trials}
    print(f"{group}: {len(trials)} trials, {min(max_concurrent, len(trials))} at a time, "
          f"{cpus:.2f} CPU per client actor; each trial's console in <its folder>/console.log", flush=True)  # fmt: skip

    def resources(config: dict[str, Any]) -> Any:
        return tune.PlacementGroupFactory([{"CPU": DRIVER_CPU}] + [{"CPU": cpus}] * layouts[config["trial"]][1])

    plans = {
        t.name: trial_overrides(t, base, out_dir, group, cpus, layouts[t.name][0])
        + ([f"resume={out_dir / t.name}"] if t.name in earlier.resumed else [])
        for t in trials
    }
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, plans=plans), resources),
        param_space={"trial": tune.grid_search(list(plans))},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(
            name=group, storage_path=str(out_dir / "tune"), verbose=0, callbacks=[TrialLines(len(trials))]
        ),
    )
    results = tuner.fit()
    errors = {}
    for i in range(len(results)):
        if results[i].error is not None:
            errors[(results[i].config or {})["trial"]] = str(results[i].error)
    return errors
