"""Secure aggregation on Ray: sessions live on the actors; a killed actor is a dropout the protocol recovers."""

import os
import signal

import pytest
import torch

from mfed.run import build

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SECURE = ("secure_aggregation=secagg_plus", "task_mix=seg_depth", "federation.clients_per_task=3")


def assert_same_state(a, b):
    """The decoded sums are exact integers in the ring: the same encodings give the same state, whatever the masks."""
    assert a.state.keys() == b.state.keys()
    for scope, tensors in a.state.items():
        for key, value in tensors.items():
            torch.testing.assert_close(b.state[scope][key], value, rtol=0, atol=0, msg=f"{scope}/{key}")


@pytest.mark.parametrize("per_actor", ["3"])  # actors hosting several clients: sessions side by side
def test_secure_rounds_on_ray_give_the_serial_backends_state(tiny_cfg, ray_cluster, per_actor):
    serial = build(tiny_cfg(*SECURE, "backend=serial"))
    on_ray = build(tiny_cfg(*SECURE, "backend=ray", f"backend.clients_per_actor={per_actor}"))
    serial.run()
    history = on_ray.run()
    assert_same_state(serial, on_ray)
    assert history[-1]["agg/secure_dropped"] == 0


class KillBefore:
    """Wraps the Ray backend: kills a client's actor just before a protocol step, ``{round: (client, step)}``."""

    def __init__(self, inner, kills):
        self.inner, self.kills, self.round = inner, dict(kills), 1

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fit(self, client_ids, state, round_idx, plan, **kwargs):
        self.round = round_idx
        return self.inner.fit(client_ids, state, round_idx, plan, **kwargs)

    def secure(self, step, payloads):
        victim, when = self.kills.get(self.round, (None, None))
        if step == when:
            import ray

            actor = self.inner.actors[victim]
            os.kill(ray.get(actor.__ray_call__.remote(lambda self: os.getpid())), signal.SIGKILL)
            del self.kills[self.round]
        return self.inner.secure(step, payloads)


class StateAfterRound:
    """A run callback that keeps the state after round 1."""

    state = None

    def on_start(self, driver):
        pass

    def on_round_end(self, driver, row):
        if int(row["round"]) == 1:
            self.state = driver.state

    def on_end(self, driver):
        pass


def test_actors_killed_mid_round_are_dropouts_the_protocol_recovers(tiny_cfg, ray_cluster):
    """Round 1: an actor dies after its masked input (its input kept: the serial state exactly);
    round 2: one dies before it (it drops out of the sum, the round goes on)."""
    serial = build(tiny_cfg(*SECURE, "federation.rounds=1", "backend=serial"))
    serial.run()
    on_ray = build(tiny_cfg(*SECURE, "federation.rounds=2", "backend=ray"))
    on_ray.backend = KillBefore(on_ray.backend, {1: ("semseg-0", "unmask"), 2: ("depth-1", "mask")})
    after = StateAfterRound()
    on_ray.callbacks = [*on_ray.callbacks, after]
    history = on_ray.run()
    assert [row["agg/secure_dropped"] for row in history] == [0, 1]
    assert after.state.keys() == serial.state.keys()
    for scope, tensors in serial.state.items():
        for key, value in tensors.items():
            torch.testing.assert_close(after.state[scope][key], value, rtol=0, atol=0, msg=f"{scope}/{key}")
    assert history[-1]["comm/clients"] == 6  # the client that dropped trained; its update was never revealed
