"""Clients that die or lag on a real Ray: the run completes every round and says what happened."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mfed.federation import gather
from mfed.run import build

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TWO_BY_TWO = ("task_mix=seg_depth", "federation.clients_per_task=2", "backend=ray")
VICTIM = "semseg-1"


def actor_pid(driver, client_id: str) -> int:
    import ray

    return ray.get(driver.backend.actors[client_id].__ray_call__.remote(lambda self: os.getpid()))


class AfterRound:
    """A run callback that calls ``action(driver)`` once, when round ``n`` has ended."""

    def __init__(self, n, action):
        self.n, self.action = n, action

    def on_start(self, driver):
        pass

    def on_round_end(self, driver, row):
        if int(row["round"]) == self.n:
            self.action(driver)

    def on_end(self, driver):
        pass


def test_a_client_whose_actor_is_killed_mid_round_is_retried_and_the_run_completes(tiny_cfg, ray_cluster):
    # Prepare: the same run on the serial backend, and one whose victim is SIGKILLed during round 2
    reference = build(tiny_cfg(*TWO_BY_TWO, "federation.rounds=3", "backend=serial"))
    reference.run()
    driver = build(tiny_cfg(*TWO_BY_TWO, "federation.rounds=3"))

    def kill_soon(d):  # stopped now, so round 2's call is still running when the process dies
        pid = actor_pid(d, VICTIM)
        os.kill(pid, signal.SIGSTOP)
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()

    driver.callbacks = [*driver.callbacks, AfterRound(1, kill_soon)]
    # Execute
    history = driver.run()
    # Assert: every round, the restart reported, and the same result as without the failure
    assert [r["round"] for r in history] == [1.0, 2.0, 3.0] and driver.status == "completed"
    restarts = [f for f in driver.faults if f.kind == "restarted"]
    assert [(f.round, f.client_id) for f in restarts] == [(2, VICTIM)], driver.faults
    assert history[1][f"fault/{VICTIM}/restarted"] == 1.0 and history[1]["fault/restarted"] == 1.0
    for key in ("val/semseg/mIoU", "val/depth/rmse"):
        assert history[-1][key] == pytest.approx(reference.history[-1][key], rel=1e-4), key


def test_a_stalled_client_is_dropped_after_the_timeout_and_the_next_round_does_not_wait(
    tiny_cfg, ray_cluster, monkeypatch, caplog
):
    monkeypatch.setattr(gather, "NOTE_EVERY_S", 1.0)
    caplog.set_level("INFO", logger=gather.__name__)  # a note at INFO, or WARNING once the others came long ago
    driver = build(tiny_cfg(*TWO_BY_TWO, "federation.rounds=3", "federation.round_timeout_s=4"))
    driver.callbacks = [*driver.callbacks, AfterRound(1, lambda d: os.kill(actor_pid(d, VICTIM), signal.SIGSTOP))]
    # Execute
    history = driver.run()
    # Assert: round 2 goes on without the stalled client; its actor is replaced, so round 3 has everyone
    assert [r["round"] for r in history] == [1.0, 2.0, 3.0]
    timeouts = [(f.round, f.client_id) for f in driver.faults if f.kind == "timeout"]
    assert timeouts == [(2, VICTIM)], driver.faults
    assert history[1]["comm/clients"] == 3 and history[2]["comm/clients"] == 4
    assert "round 2 fit: waiting for 1 clients" in caplog.text and VICTIM in caplog.text


def test_a_node_removed_mid_run_costs_only_a_retried_round(tiny_cfg, tmp_path):
    # Prepare: 4 clients spread over a two-node cluster (its own processes, apart from the session's Ray)
    args = (*TWO_BY_TWO, "federation.rounds=3", "data.test=null")
    configs = []
    for name, backend in (("ray", ("backend=ray", "backend.placement=spread")), ("serial", ("backend=serial",))):
        path = tmp_path / f"{name}.yaml"
        OmegaConf.save(tiny_cfg(*args, *backend, f"out_dir={tmp_path / name}"), path, resolve=True)
        configs.append(str(path))
    # Execute: the worker node is removed after round 1
    script = Path(__file__).with_name("two_nodes.py")
    done = subprocess.run([sys.executable, str(script), *configs], capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    # Assert: clients on both nodes; those on the lost node retried in round 2 only; every round complete
    placed = result["placed"]
    assert sorted(placed.values()) == ["head", "head", "worker", "worker"], placed
    lost = sorted(c for c, node in placed.items() if node == "worker")
    assert sorted(c for r, c, kind in result["faults"] if kind == "restarted" and r == 2) == lost, result["faults"]
    assert all(kind == "restarted" and r == 2 for r, _, kind in result["faults"]), result["faults"]
    assert result["rounds"] == [1, 2, 3] and result["status"] == "completed"
    assert result["clients_per_round"] == [4, 4, 4] and result["finite"]
    assert result["max_abs_diff"] == 0.0  # the serial backend's state, bit for bit: moving clients changes nothing


@pytest.mark.parametrize("claimed", ["semseg-0", "depth-0"])  # its task's other client; another task's
def test_an_update_claiming_another_clients_id_is_rejected_and_the_real_one_kept(tiny_cfg, ray_cluster, claimed):
    # Prepare: from round 2 on, the victim's actor labels its messages as another client's (with its own tasks)
    import ray

    driver = build(tiny_cfg(*TWO_BY_TWO, "federation.rounds=2"))

    def impersonate(d):
        def lie(host):  # the host's helper that every call goes through, replaced on this actor's instance
            honest = host._run

            def run(client_id, work):
                import dataclasses

                message = honest(client_id, work)
                return dataclasses.replace(message, client_id=claimed) if client_id == VICTIM else message

            host._run = run

        ray.get(d.backend.actors[VICTIM].__ray_call__.remote(lie))

    driver.callbacks = [*driver.callbacks, AfterRound(1, impersonate)]
    # Execute
    history = driver.run()
    # Assert: the call made for the victim is rejected, naming both ids; the claimed client's own update counts
    rejected = {(f.round, f.client_id, f.kind) for f in driver.faults}
    assert rejected == {(2, VICTIM, "rejected")}, driver.faults  # its update, and its evaluation after round 2
    assert f"claims to be client {claimed!r}" in driver.faults[0].reason and repr(VICTIM) in driver.faults[0].reason
    assert history[-1]["comm/clients"] == 3 and f"client/{claimed}/train_loss" in history[-1]
    assert f"client/{VICTIM}/train_loss" not in history[-1] and driver.status == "completed"
