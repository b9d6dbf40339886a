"""Clients that die or lag on a real Ray: the run completes every round and says what happened."""

import os
import signal
import threading

import pytest

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
