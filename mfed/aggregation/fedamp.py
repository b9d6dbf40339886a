"""FedAMP (Huang et al., AAAI 2021, "Personalized Cross-Silo Federated Learning on Non-IID Data").

Attentive message passing. Each round the server computes, for each of the round's clients i, a
personalised *cloud model* from the models ``w_j`` the clients sent,

    u_i = xi_ii w_i + sum_{j != i} xi_ij w_j,    xi_ij = alpha A'(||w_i - w_j||^2),    xi_ii = 1 - sum_{j != i} xi_ij,

with ``A(x) = 1 - exp(-x / sigma)``, so ``A'(x) = exp(-x / sigma) / sigma`` (:func:`attention`,
:func:`cloud_models`): a client gets more of the peers whose models are close to its own. Each
client then minimises ``F_i(w) + lam / (2 alpha) ||w - u_i||^2`` by local training: a real,
differentiable proximal term toward ``u_i`` (:mod:`mfed.systems.regularisers`, ``mu = lam / alpha``).

**Not the authors' port.** FMTL-Bench's FedAMP, a line-by-line port of PFLlib's
``serveramp.py``/``clientamp.py``, builds its proximal term from ``p.data`` (detached, zero
gradient) and un-squared: ``u_i`` never reaches ``w_i``, so as coded it is Local training. Here
the gradient ``(lam / alpha) (w - u_i)`` flows.

**Multi-task.** The encoder's ``u_i`` is computed over all the round's clients; each task's
decoder ``u_i`` over the round's clients holding that task (a client holding several tasks gets
one per task). Distances are taken over a group's floating parameters, never BatchNorm's running
statistics (estimates, not trained weights) or integer counters: those stay the client's own in
``u_i``.

**What is scored, and where a client starts.** The paper's output is the personalised models
``w_i``. A client keeps its trained ``w_i`` as private state (``client:<id>``), starts each round
from it and pulls it toward ``u_i`` (``personal:<id>``, downloaded); evaluation scores ``w_i``,
as PFLlib and FMTL-Bench do. Before its first round a client starts from ``global`` /
``task:<t>``: the initial model, then the weighted mean of the latest round's cloud models
(``weighting``; the paper has every client in every round, so it does not say).

**Partial participation.** ``u_i`` is computed over the round's clients only (as PFLlib, over the
uploaded models); a client not sampled keeps its ``u_i`` and ``w_i``.

**Numerics, and the choice made.** ``exp(-d / sigma)`` underflows to 0 for ``d`` beyond about
``745 sigma`` (float64): then ``xi_ij = 0`` and ``u_i = w_i``, FedAMP degenerates to Local. The
squared distance grows with the number of parameters, so ``sigma`` must be set to the scale of
the distances: the round's ``agg/distance/<group>`` (the mean squared distance between the
group's models: ``global`` for the encoder, the task's name for a decoder) gives their scale, and
``agg/xi_peer_max`` (the largest weight on a peer) shows whether any message passes. Since
``A' <= 1 / sigma``, ``xi_ii >= 1 - alpha (N - 1) / sigma``: with ``alpha > sigma / (N - 1)``
the self-weight goes negative for close models and ``u_i`` extrapolates away from the peers
instead of being a convex combination (the paper's analysis assumes a small enough step
``alpha``). **We refuse it**: :meth:`FedAMP.configure_round` raises, before a round's clients
train, when ``alpha (N - 1) > sigma`` for the round's ``N`` clients (the worst case, models that
coincide), and the fold raises if a self-weight is negative anyway. FMTL-Bench's defaults
(``alpha = sigma = 1``) are therefore refused for more than 2 clients a round; they only ran there
because the distances underflow.

**Defaults (ours).** ``alpha = 0.1``, ``sigma = 1``, ``lam = 0.1`` (a proximal strength
``lam / alpha = 1``): up to 11 clients a round pass the check above, and a client's weight on a
peer starts near ``alpha`` and fades as their models part by more than ``sigma``. FMTL-Bench's
``alpha = sigma = 1, lam = 15`` never acted (its term is detached), so it is no evidence for a
strength that does; the paper tunes them per data set. Set ``sigma`` from ``agg/distance/...``.

Defences, DP, secure aggregation and a server optimiser are refused (:meth:`FedAMP.declaration`):
the aggregation is a personalised combination of whole models, not a mean per scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mfed.aggregation.base import Plan, Strategy
from mfed.aggregation.contract import Declaration, whole_updates
from mfed.aggregation.functional import RunningMean, encoder_and_decoders
from mfed.aggregation.stages import Combine, Combiner, OwnCombine, Parts, RoundContext, floating_parameters
from mfed.models.multitask import ENCODER_PREFIX, MultiTaskModel, decoder_prefix
from mfed.types import PARTS as MODEL_PARTS
from mfed.types import (
    ClientSpec,
    ClientUpdate,
    LocalStep,
    ServerState,
    State,
    global_scope,
    personal_scope,
    task_scope,
)


def squared_distances(models: Sequence[State], keys: Sequence[str]) -> Tensor:
    """``d[i, j] = ||w_i - w_j||^2`` over ``keys`` (float64, from the differences: no cancellation)."""
    n = len(models)
    d = torch.zeros((n, n), dtype=torch.float64)
    for i in range(n):
        for j in range(i + 1, n):
            total = sum(float((models[i][k].double() - models[j][k].double()).square().sum()) for k in keys)
            d[i, j] = d[j, i] = total
    return d


def attention(distances: Tensor, alpha: float, sigma: float) -> Tensor:
    """FedAMP's weights ``xi`` (rows: clients) from squared distances: ``alpha A'(d)`` off the diagonal, rows sum to 1.

    ``exp(-d / sigma)`` underflows to 0 for far models (no error): ``xi_ij = 0``, ``xi_ii = 1``.
    """
    xi = alpha * torch.exp(-distances.double() / sigma) / sigma
    xi.fill_diagonal_(0.0)
    xi.diagonal().copy_(1.0 - xi.sum(dim=1))
    return xi


def cloud_models(models: Sequence[State], alpha: float, sigma: float) -> tuple[list[State], Tensor, Tensor]:
    """Each model's ``u_i = sum_j xi_ij w_j`` over its floating parameters; other tensors stay its own.

    Args:
        models: The group's models (same keys and shapes), one per client.
        alpha: FedAMP's step ``alpha_k`` (> 0).
        sigma: The scale of the attention function ``A`` (> 0).

    Returns:
        The cloud models (each tensor in its own dtype), ``xi`` and the squared distances (both
        float64, rows: clients).

    """
    keys = floating_parameters(models[0])
    distances = squared_distances(models, keys)
    xi = attention(distances, alpha, sigma)
    clouds = [dict(m) for m in models]
    for key in keys:
        stacked = torch.stack([m[key].double().reshape(-1) for m in models])  # (N, numel)
        mixed = xi @ stacked
        for i, m in enumerate(models):
            clouds[i][key] = mixed[i].reshape(m[key].shape).to(m[key].dtype)
    return clouds, xi, distances


class FedAMP(Strategy):
    """Attentive message passing: a cloud model per client, clients pulled toward theirs.

    Args:
        alpha: The step ``alpha_k`` of the attention's gradient (> 0; at most ``sigma / (N - 1)``
            for ``N`` clients a round, see the module doc).
        sigma: The scale of ``A(x) = 1 - exp(-x / sigma)`` (> 0), in squared-distance units.
        lam: ``lambda``: the client's proximal term is ``lam / (2 alpha) ||w - u_i||^2`` (>= 0).
        weighting: ``examples`` or ``uniform``: only the shared starting models' means (the
            attention weights ``xi`` take no example counts).
        name: Run and report name (see :class:`Strategy`).

    """

    name = "fedamp"

    def __init__(
        self,
        alpha: float = 0.1,
        sigma: float = 1.0,
        lam: float = 0.1,
        weighting: str = "examples",
        name: str | None = None,
    ) -> None:
        super().__init__(weighting, name)
        for key, value, ok, bound in (
            ("alpha", alpha, alpha > 0, "> 0"),
            ("sigma", sigma, sigma > 0, "> 0"),
            ("lam", lam, lam >= 0, ">= 0"),
        ):
            if not ok:
                raise ValueError(f"aggregation.{key} must be {bound}, got {value}")
        self.alpha, self.sigma, self.lam = float(alpha), float(sigma), float(lam)

    @property
    def prox_mu(self) -> float:
        """The proximal strength ``lam / alpha`` (the term is ``mu / 2 ||w - u_i||^2``)."""
        return self.lam / self.alpha

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """Train its own model ``w_i`` pulled toward its cloud model ``u_i``; send it and keep it."""
        prox = tuple((p, self.prox_mu) for p in MODEL_PARTS) if self.lam > 0 else ()
        return (LocalStep(start="own", prox=prox, sends=MODEL_PARTS, keeps=MODEL_PARTS),)

    def configure_round(
        self, round_idx: int, state: ServerState, clients: Sequence[ClientSpec], rng: torch.Generator
    ) -> Plan:
        """Every client's step; refused before training when a self-weight could be negative (module doc)."""
        self.check_round_size(len(clients))
        return super().configure_round(round_idx, state, clients, rng)

    def check_round_size(self, n: int) -> None:
        """Refuse ``n`` clients a round when a self-weight could go negative: ``alpha (n - 1) > sigma``."""
        if self.alpha * (n - 1) > self.sigma:
            raise ValueError(
                f"aggregation.alpha={self.alpha:g} with {n} clients a round can make a client's self-weight "
                f"xi_ii = 1 - sum_j xi_ij negative (down to {1 - self.alpha * (n - 1) / self.sigma:g}): its cloud "
                f"model would extrapolate away from its peers; FedAMP needs alpha <= sigma / (N - 1) = "
                f"{self.sigma / max(n - 1, 1):g}: lower aggregation.alpha or raise aggregation.sigma"
            )

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The initial encoder and decoders: where a client starts before its first round."""
        return encoder_and_decoders(model.state_dict(), model.tasks)

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder's group is ``global`` (every client), each decoder's its task's scope (its holders)."""
        return [(global_scope(), (ENCODER_PREFIX,)), *((task_scope(t), (decoder_prefix(t),)) for t in tasks)]

    def declaration(self) -> Declaration:
        """Needs every update in the clear; its combine is personalised, not a bounded mean."""
        why = "combines whole models into a personalised cloud model per client (attentive message passing)"
        return whole_updates(self.name, why)

    def combine(self) -> Combine:
        """Its own combine: the round's models kept until its result, which needs all of them."""
        return OwnCombine(self, _Round)


@dataclass
class _Member:
    client_id: str
    weight: float
    model: State  # its part of the group (the encoder, or one task's decoder)


class _Round(Combiner):
    """One FedAMP round: each scope's models kept as they arrive, combined in :meth:`result`."""

    def __init__(self, strategy: FedAMP, ctx: RoundContext) -> None:
        self.strategy, self.ctx = strategy, ctx
        self.groups: dict[str, list[_Member]] = {}

    def add(self, update: ClientUpdate, weight: float, parts: Parts) -> None:
        for scope, part in parts:
            self.groups.setdefault(scope, []).append(_Member(update.client_id, weight, part))

    def result(self) -> ServerState:
        """Each client's cloud model under ``personal:<id>``; each scope: the mean of its cloud models."""
        personal: dict[str, State] = {}
        out: ServerState = {}
        selves: list[float] = []
        peers = 0.0
        for scope, members in self.groups.items():
            clouds, xi, distances = cloud_models([m.model for m in members], self.strategy.alpha, self.strategy.sigma)
            self_weights = xi.diagonal()
            if bool((self_weights < 0).any()):
                worst = members[int(self_weights.argmin())].client_id
                raise ValueError(
                    f"fedamp: client {worst}'s self-weight in {scope} is {float(self_weights.min()):.3g} < 0 "
                    f"(aggregation.alpha={self.strategy.alpha:g} > sigma / (N - 1) for {len(members)} models)"
                )
            selves += self_weights.tolist()
            if len(members) > 1:  # how far the group's models are apart, in the units of sigma
                peers = max(peers, float((xi - torch.diag(self_weights)).max()))
                n = len(members)
                self.ctx.metrics[f"distance/{scope.removeprefix('task:')}"] = float(distances.sum()) / (n * (n - 1))
            mean = RunningMean()
            for member, cloud in zip(members, clouds, strict=True):
                personal.setdefault(member.client_id, {}).update(cloud)
                mean.add(cloud, member.weight, f"client {member.client_id}")
            out[scope] = {**self.ctx.state.get(scope, {}), **mean.value()}
        if selves:
            self.ctx.metrics.update(
                {"xi_self_min": min(selves), "xi_self_mean": sum(selves) / len(selves), "xi_peer_max": peers}
            )
        out.update({personal_scope(cid): model for cid, model in personal.items()})
        return out
