"""The Ray backend against the serial one, and the W&B run a real Ray run leaves behind."""

import pytest
import torch

from mfed.loggers.wandb_offline import find_offline_runs, read_run_file
from mfed.run import build, run

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TWO_BY_TWO = ("task_mix=seg_depth", "federation.clients_per_task=2", "federation.rounds=2")


def test_serial_and_ray_backends_give_the_same_global_state(tiny_cfg, ray_cluster):
    # Prepare: the same seed and config, two backends
    serial = build(tiny_cfg(*TWO_BY_TWO, "backend=serial"))
    on_ray = build(tiny_cfg(*TWO_BY_TWO, "backend=ray"))
    # Execute
    serial_history, ray_history = serial.run(), on_ray.run()
    # Assert: identical server state and metrics, scope by scope
    assert serial.state.keys() == on_ray.state.keys()
    for scope, tensors in serial.state.items():
        for key, value in tensors.items():
            torch.testing.assert_close(on_ray.state[scope][key], value, rtol=1e-5, atol=1e-6, msg=f"{scope}/{key}")
    assert ray_history[-1]["val/semseg/mIoU"] == pytest.approx(serial_history[-1]["val/semseg/mIoU"], rel=1e-4)
    assert ray_cluster.is_initialized()  # the backend leaves a cluster it did not start running


def test_a_hetero_federation_on_ray_gives_the_serial_backends_state_and_per_task_keys(tiny_cfg, ray_cluster):
    # Prepare: clients holding all three tasks beside single-task ones, with learnt loss weights (private state)
    args = ("federation=hetero", "data.pool.length=60", "weighting=uncertainty")
    serial = build(tiny_cfg(*args, "backend=serial"))
    on_ray = build(tiny_cfg(*args, "backend=ray", "backend.clients_per_actor=auto"))
    # Execute
    serial.run()
    history = on_ray.run()
    # Assert
    assert serial.state.keys() == on_ray.state.keys()
    for scope, tensors in serial.state.items():
        for key, value in tensors.items():
            torch.testing.assert_close(on_ray.state[scope][key], value, rtol=1e-5, atol=1e-6, msg=f"{scope}/{key}")
    assert history[-1]["client/semseg+depth+edges-1/train_loss"] > 0
    for task in ("semseg", "depth", "edges"):
        assert history[-1][f"client/semseg+depth+edges-1/{task}/test_{on_ray.tasks[task].headline}"] >= 0


@pytest.mark.parametrize("per_actor", ["3", "auto"])
def test_pooled_actors_give_the_same_global_state_as_resident_clients(tiny_cfg, ray_cluster, per_actor):
    # Prepare: 4 clients, half sampled per round, on the serial backend and on actors hosting several each
    args = (*TWO_BY_TWO, "federation.fraction=0.5", "federation.rounds=3")
    serial = build(tiny_cfg(*args, "backend=serial"))
    pooled = build(tiny_cfg(*args, "backend=ray", f"backend.clients_per_actor={per_actor}"))
    # Execute
    serial.run()
    pooled.run()
    # Assert: fewer actors than clients, and the same state scope by scope
    assert len(set(pooled.backend.host_of.values())) == 2  # ceil(4 / 3) = 2, or one per CPU of the 2-CPU test cluster
    for scope, tensors in serial.state.items():
        for key, value in tensors.items():
            torch.testing.assert_close(pooled.state[scope][key], value, rtol=1e-5, atol=1e-6, msg=f"{scope}/{key}")
    assert pooled.history[-1]["val/depth/rmse"] == pytest.approx(serial.history[-1]["val/depth/rmse"], rel=1e-4)


def test_offline_wandb_run_holds_per_task_curves_for_every_round(tiny_cfg, ray_cluster, offline_wandb):
    import wandb

    cfg = tiny_cfg(*TWO_BY_TWO, "backend=ray", "logger=wandb")
    run(cfg)
    wandb.teardown()  # finish() returns before the file is flushed
    files = find_offline_runs(cfg.out_dir)
    assert len(files) == 1
    logged = read_run_file(files[0])
    rounds = [row["round"] for row in logged.history]
    assert rounds == [1, 2]
    for row in logged.history:
        for key in ("val/semseg/mIoU", "val/depth/rmse", "train/semseg/loss", "train/depth/loss"):
            assert key in row, key
    assert logged.group == "shapes-seg_depth" and logged.name == "mfed-shapes-seg_depth-s0"
    assert logged.summary["final/val/depth/rmse"] == pytest.approx(logged.history[-1]["val/depth/rmse"])
    assert logged.summary["status"] == "completed"


def test_a_host_with_room_takes_clients_whose_own_host_is_busy(tiny_cfg, ray_cluster):
    # Prepare: 4 clients on 2 pooled hosts; the round's sample is every client of host-0
    driver = build(tiny_cfg(*TWO_BY_TWO, "backend=ray", "backend.clients_per_actor=auto"))
    backend = driver.backend
    backend.start(driver.specs, driver.setup)
    try:
        own = [c for c, h in backend.host_of.items() if h == "host-0"]
        assert len(own) == 2
        state = driver.strategy.init_state(driver.model)
        # Execute: each of them twice: four calls, and room for two on host-0
        updates = list(backend.fit([*own, *own], state, 1, driver.plan(1, own)))
        # Assert: host-1 served some of them, and the results equal those of their own host
        served = {host for host, _ in backend._ran_on.values()}
        assert served == {"host-0", "host-1"}, backend._ran_on
        by_client: dict[str, list] = {}
        for u in updates:
            by_client.setdefault(u.client_id, []).append(u)
        for first, again in by_client.values():
            for key, value in first.state.items():
                assert torch.equal(again.state[key], value), key
    finally:
        backend.shutdown()


def test_inside_a_job_a_gpu_request_the_cluster_cannot_hold_is_refused_before_any_folder(ray_cluster, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import TINY

    # Prepare: a driver process that joins the running cluster by RAY_ADDRESS, as a submitted job's does
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}
    args = [a for a in TINY if a != "backend=serial"]
    command = [sys.executable, "-m", "mfed", "train", *args, "backend=ray", "backend.num_gpus_per_client=1",
               f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    # Execute
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    # Assert: one line naming the key and what the cluster has, exit 2, nothing written
    assert done.returncode == 2, done.stderr[-3000:]
    assert "backend.num_gpus_per_client=1 x 6 actors needs 6 GPUs but the cluster has 0" in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("mfed:")] == done.stderr.strip().splitlines()[
        -1:
    ]
    assert not (tmp_path / "run").exists()
