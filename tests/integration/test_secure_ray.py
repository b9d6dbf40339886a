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
    """Wraps the Ray backend: kills ``victim``'s actor just before the protocol's step ``step`` of round 1."""

    def __init__(self, inner, victim, step):
        self.inner, self.victim, self.step, self.done = inner, victim, step, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def secure(self, step, payloads):
        if step == self.step and not self.done:
            import ray

            actor = self.inner.actors[self.victim]
            os.kill(ray.get(actor.__ray_call__.remote(lambda self: os.getpid())), signal.SIGKILL)
            self.done = True
        return self.inner.secure(step, payloads)


def test_a_client_whose_actor_dies_after_masking_is_recovered_and_its_input_kept(tiny_cfg, ray_cluster):
    args = (*SECURE, "federation.rounds=1")
    serial = build(tiny_cfg(*args, "backend=serial"))
    serial.run()
    on_ray = build(tiny_cfg(*args, "backend=ray"))
    on_ray.backend = KillBefore(on_ray.backend, "semseg-0", "unmask")
    history = on_ray.run()
    assert history[-1]["agg/secure_dropped"] == 0  # it sent its masked input: it is in the sum
    assert_same_state(serial, on_ray)


def test_a_client_whose_actor_dies_before_masking_drops_out_of_the_sum(tiny_cfg, ray_cluster):
    on_ray = build(tiny_cfg(*SECURE, "federation.rounds=1", "backend=ray"))
    on_ray.backend = KillBefore(on_ray.backend, "depth-1", "mask")
    history = on_ray.run()
    assert history[-1]["agg/secure_dropped"] == 1
    assert history[-1]["comm/clients"] == 6  # it trained; its update was never revealed nor summed
