"""A federation on a two-node Ray cluster simulated in this process; the worker node is removed after round 1.

Run as a subprocess by the node-loss test (a simulated cluster needs a process of its own):
``python two_nodes.py <ray config.yaml> <serial config.yaml>``. Prints one line ``RESULT <json>`` with where each client
ran, the faults, the rounds completed and the largest difference from the same run on the
serial backend. ``cluster.shutdown()`` ends every process it started.
"""

import json
import sys

import ray
import torch
from omegaconf import OmegaConf
from ray.cluster_utils import Cluster

from mfed.run import build


class RemoveNodeAfter:
    """A run callback that removes ``node`` from ``cluster`` once round ``n`` has ended."""

    def __init__(self, n, cluster, node):
        self.n, self.cluster, self.node = n, cluster, node

    def on_start(self, driver):
        pass

    def on_round_end(self, driver, row):
        if int(row["round"]) == self.n:
            self.cluster.remove_node(self.node)

    def on_end(self, driver):
        pass


def main(ray_config: str, serial_config: str) -> None:
    reference = build(OmegaConf.load(serial_config))
    reference.run()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=4)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        driver = build(OmegaConf.load(ray_config))
        driver.callbacks = [*driver.callbacks, RemoveNodeAfter(1, cluster, worker)]
        placed: dict[str, str] = {}
        start = driver.backend.start

        def start_and_record(specs, setup):
            start(specs, setup)
            placed.update({c: driver.backend.node_of[h] for c, h in driver.backend.host_of.items()})

        driver.backend.start = start_and_record
        history = driver.run()
        diff = max(
            float((driver.state[scope][key].double() - value.double()).abs().max())
            for scope, tensors in reference.state.items()
            for key, value in tensors.items()
        )
        result = {
            "rounds": [int(r["round"]) for r in history],
            "status": driver.status,
            "placed": {c: "worker" if n == worker.node_id else "head" for c, n in placed.items()},
            "faults": [[f.round, f.client_id, f.kind] for f in driver.faults],
            "clients_per_round": [r["comm/clients"] for r in history],
            "max_abs_diff": diff,
            "finite": all(torch.isfinite(t.float()).all() for s in driver.state.values() for t in s.values()),
        }
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
