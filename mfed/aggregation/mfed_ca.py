"""M-Fed with a conflict-averse encoder update (``mfed_ca``): the smallest change to M-Fed aimed at task conflict.

M-Fed moves the global encoder by the mean of all clients' updates, so a task whose clients'
updates point against another's is averaged away (the diagnostics ``diag/cos/<kind>~<kind>``
show the tasks' mean encoder updates pulling apart as training goes on). ``mfed_ca`` keeps
everything of M-Fed (decoders averaged per task with the proximal pull, BatchNorm statistics
averaged over every client) and replaces only the encoder's parameter update by CAGrad's
conflict-averse direction over the tasks' mean updates (:mod:`mfed.aggregation.conflict`):

    g_t = sum_{k holds t} w_k Delta_k^enc / sum_{k holds t} w_k     (each task's mean update)
    theta^enc <- theta^enc + d,  d = (g_0 + c ||g_0|| g_w / ||g_w||) / (1 + c^2)

with g_0 the tasks' uniform mean (each task counts once, however many clients it has) and
``g_w`` CAGrad's worst-case combination. A client holding several tasks adds its update to each
of its tasks' means.

Why CAGrad and not PCGrad: CAGrad's direction stays within ``c ||g_0||`` of the tasks' mean, so
with ``c = 0`` it is the mean and it converges to a stationary point of the average loss, while
maximising the worst task's improvement; PCGrad's projections depend on the order of the tasks
(a random order on a server would make rounds irreproducible without a seed) and can remove most
of the mean where two tasks nearly oppose each other. It is also what FedHCA2's encoder
aggregation solves, across clients instead of tasks, so the two rows differ in what they pool.
"""

from __future__ import annotations

import math

import torch

from mfed.aggregation.conflict import cagrad_coefficients, combine, gram
from mfed.aggregation.functional import RunningMean, select, update_weight
from mfed.aggregation.mfed import MFed
from mfed.aggregation.streaming import Aggregation
from mfed.models.multitask import ENCODER_PREFIX
from mfed.types import ClientUpdate, ServerState, global_scope


class MFedCA(MFed):
    """M-Fed whose encoder update is the conflict-averse combination of the tasks' mean updates.

    Args:
        ca_c: Radius of the conflict-averse ball relative to the tasks' mean update (>= 0; 0 is
            the tasks' uniform mean; 0.4 as CAGrad's and FedHCA2's defaults).
        mu: Strength of the local decoder proximal term (as M-Fed).
        weighting: ``examples`` or ``uniform`` (within each task's mean, and M-Fed's means).
        name: Run and report name (see :class:`Strategy`).

    """

    name = "mfed_ca"
    combines = "a conflict-averse combination of the tasks' mean encoder updates"

    def __init__(self, ca_c: float = 0.4, mu: float = 0.01, weighting: str = "examples", name: str | None = None):
        super().__init__(mu=mu, weighting=weighting, name=name)
        if ca_c < 0:
            raise ValueError(f"aggregation.ca_c must be >= 0, got {ca_c}")
        self.ca_c = float(ca_c)

    def aggregation(self, state: ServerState, round_idx: int = 0, rng: torch.Generator | None = None) -> Aggregation:
        """M-Fed's round, with a running mean of the encoder per task beside it."""
        return _Round(self, state, round_idx, rng)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", ca_c={self.ca_c})"


def _parameter(key: str, value: torch.Tensor) -> bool:
    """A trained parameter (not a BatchNorm statistic, which is averaged as M-Fed does)."""
    return value.is_floating_point() and not key.endswith(("running_mean", "running_var"))


class _Round(Aggregation):
    strategy: MFedCA

    def __init__(self, strategy: MFedCA, state: ServerState, round_idx: int = 0, rng: torch.Generator | None = None):
        super().__init__(strategy, state, round_idx, rng)
        self.tasks: dict[str, RunningMean] = {}

    def add(self, update: ClientUpdate) -> None:
        """M-Fed's fold, and the update's encoder parameters into each of its tasks' means."""
        super().add(update)
        encoder = {k: v for k, v in select(update.state, [ENCODER_PREFIX]).items() if _parameter(k, v)}
        if encoder:
            weight = update_weight(update, self.strategy.weighting)
            for task in update.tasks:
                self.tasks.setdefault(task, RunningMean()).add(encoder, weight, f"client {update.client_id}")

    def result(self) -> tuple[ServerState, dict[str, float]]:
        """M-Fed's state with the encoder's parameters moved by the conflict-averse direction."""
        state, metrics = super().result()
        if not self.tasks:
            return state, metrics
        start = self.state[global_scope()]
        tasks = list(self.tasks)
        means = [
            {k: v.double() - start[k].double() for k, v in self.tasks[t].value().items()} for t in tasks
        ]  # the tasks' mean updates (RunningMean casts to the parameters' dtype; the deltas are float64)
        coefficients = cagrad_coefficients(gram(means), self.strategy.ca_c)
        direction = combine(means, coefficients)
        encoder = dict(state[global_scope()])
        for key, d in direction.items():
            encoder[key] = (start[key].double() + d).to(start[key].dtype)
        metrics |= {f"ca/{t}": float(a) for t, a in zip(tasks, coefficients, strict=True)}
        metrics["ca_norm"] = math.sqrt(sum(float(d.square().sum()) for d in direction.values()))
        return {**state, global_scope(): encoder}, metrics
