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

On the fold's stages: the route sends each client's encoder parameters into ``group:<task>`` for
each of its tasks besides ``global`` (fold-only scopes, never kept), so the bound and combine
stages act on the task means as on every scope (clipping and a robust rule apply to them); the
conflict-averse step (:class:`ConflictAverse`) is a server step over those means, and a configured
server optimiser runs after it on the encoder it sets. Under ``privacy=dp`` each task's mean is a
noised mean like every scope's (its denominator: the task's expected clients per round), and the
conflict-averse step is post-processing of the noised means; a client's encoder counts in its
jointly clipped update once per scope it folds into (the global one and each of its tasks').

Why CAGrad and not PCGrad: CAGrad's direction stays within ``c ||g_0||`` of the tasks' mean, so
with ``c = 0`` it is the mean and it converges to a stationary point of the average loss, while
maximising the worst task's improvement; PCGrad's projections depend on the order of the tasks
(a random order on a server would make rounds irreproducible without a seed) and can remove most
of the mean where two tasks nearly oppose each other. It is also what FedHCA2's encoder
aggregation solves, across clients instead of tasks, so the two rows differ in what they pool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mfed.aggregation.conflict import cagrad_coefficients, combine, gram
from mfed.aggregation.contract import FOLDS, MEANS, Declaration
from mfed.aggregation.functional import select
from mfed.aggregation.mfed import MFed
from mfed.aggregation.stages import Parts, RoundContext, ServerStep, floating_parameters
from mfed.models.multitask import ENCODER_PREFIX
from mfed.types import ClientSpec, ClientUpdate, ServerState, global_scope

GROUP = "group:"  # a task's mean encoder update: a scope of the fold only


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

    def __init__(self, ca_c: float = 0.4, mu: float = 0.01, weighting: str = "examples", name: str | None = None):
        super().__init__(mu=mu, weighting=weighting, name=name)
        if ca_c < 0:
            raise ValueError(f"aggregation.ca_c must be >= 0, got {ca_c}")
        self.ca_c = float(ca_c)

    def route(self, update: ClientUpdate, state: ServerState) -> Parts:
        """M-Fed's parts, and the update's encoder parameters into each of its tasks' ``group:<task>``."""
        parts = super().route(update, state)
        encoder = select(update.state, [ENCODER_PREFIX])
        encoder = {k: encoder[k] for k in floating_parameters(encoder)}
        return parts + [(GROUP + t, encoder) for t in update.tasks] if encoder else parts

    def members(self, specs: Sequence[ClientSpec]) -> dict[str, dict[str, int]]:
        """M-Fed's scopes, and each task's mean ``group:<task>`` (its clients: the task's)."""
        counts = super().members(specs)
        for scope, kinds in list(counts.items()):
            if scope.startswith("task:"):
                counts[GROUP + scope.removeprefix("task:")] = dict(kinds)
        return counts

    def view(self, state: ServerState) -> ServerState:
        """The state, and each task's ``group:<task>``: the global encoder's parameters (its clients' start)."""
        encoder = state.get(global_scope(), {})
        start = {k: encoder[k] for k in floating_parameters(encoder)}
        tasks = [s.removeprefix("task:") for s in state if s.startswith("task:")]
        return {**state, **{GROUP + t: start for t in tasks}} if start else state

    def unview(self, view: ServerState, state: ServerState) -> ServerState:
        """The next state without the fold-only task means."""
        return {s: v for s, v in view.items() if not s.startswith(GROUP)}

    def server_steps(self) -> list[ServerStep]:
        """The conflict-averse step over the tasks' mean encoder updates."""
        return [ConflictAverse(self.ca_c)]


class ConflictAverse(ServerStep):
    """CAGrad over the tasks' mean encoder updates (``group:<task>`` aggregates): the global encoder's parameters.

    Args:
        ca_c: The ball's radius relative to the tasks' mean update (>= 0).

    """

    namespace = "conflict_averse"

    def __init__(self, ca_c: float) -> None:
        self.ca_c = float(ca_c)

    def declaration(self) -> Declaration:
        """Needs a mean per task to take the tasks' mean updates from."""
        return Declaration(f"aggregation.ca_c={self.ca_c:g}", needs=frozenset({FOLDS, MEANS}))

    def step(self, ctx: RoundContext, aggregates: ServerState) -> ServerState:
        """The aggregates without the task means; the global encoder's parameters moved by the conflict-averse step."""
        tasks = [s.removeprefix(GROUP) for s in aggregates if s.startswith(GROUP)]
        out = {s: v for s, v in aggregates.items() if not s.startswith(GROUP)}
        if not tasks:
            return out
        start = ctx.state[global_scope()]
        means = [
            {k: v.double() - start[k].double() for k, v in aggregates[GROUP + t].items()} for t in tasks
        ]  # the tasks' mean updates (the combine casts to the parameters' dtype; the deltas are float64)
        coefficients = cagrad_coefficients(gram(means), self.ca_c)
        direction = combine(means, coefficients)
        encoder = dict(out[global_scope()])
        for key, d in direction.items():
            encoder[key] = (start[key].double() + d).to(start[key].dtype)
        ctx.metrics.update({f"ca/{t}": float(a) for t, a in zip(tasks, coefficients, strict=True)})
        ctx.metrics["ca_norm"] = math.sqrt(sum(float(d.square().sum()) for d in direction.values()))
        return {**out, global_scope(): encoder}
