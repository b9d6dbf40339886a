"""FedHCA2 (Lu et al., CVPR 2024, arXiv 2311.13250): hetero-client federated multi-task learning.

Clients hold one task or several; each keeps a personalised model that the server computes for
it every round. Round t, sampled clients i with start model theta_i (their personalised model of
the last round they took part in; the mean of the others' before their first) and update
Delta_i = theta_i' - theta_i after local training:

*Encoder: hyper conflict-averse aggregation.* The encoder updates' conflict-averse direction
(:mod:`mfed.aggregation.conflict`, CAGrad over the clients' updates, radius ``ca_c``),

    d = (g_0 + c ||g_0|| g_w / ||g_w||) / (1 + c^2),    g_w = sum_i w*_i Delta_i^enc,

gives each client ``theta_i^enc <- theta_i^enc + Delta-bar_{kind(i)}^enc + clip(alpha_i, 0, 1) d``,
where ``Delta-bar_kind`` is the mean update of the round's clients holding the same tasks (the
authors' code averages identical clients' updates this way before the personalised step; the
strategy's ``weighting`` weights it) and ``alpha_i`` is the client's hyper weight.

*Decoders: hyper cross-attention aggregation.* Every decoder k (a client's decoder for one of its
tasks) attends, tensor by tensor, over every decoder of the round whose tensor has the same name
and shape (all tasks, as in the authors' code, where the decoders share an architecture), itself
included, with the scaled dot product of the updates and no learnt projection:

    phi_k <- phi_k + Delta_k + clip(beta_k^l, 0, 1) sum_j softmax_j(<Delta_k, Delta_j> / sqrt(numel)) Delta_j,

with one hyper weight beta_k^l per decoder and layer l (a tensor's module: ``body.0`` holds
``body.0.weight`` and ``body.0.bias``). The prediction heads (``local_keys``, by default the
decoders' ``head.`` tensors) are never aggregated, as in the paper.

*Hyper weights*, learnt on the server: alpha_i and beta_k^l start at ``alpha_init`` and
``beta_init`` and take one SGD step (``hyper_lr``, momentum ``hyper_momentum``, weight decay
``hyper_weight_decay``) per round, before the round's aggregation, on the chain rule's gradient
of the client's next local loss, approximated as the authors' code does by its next update:
``d/d alpha_i = -<d^{t-1}, Delta_i^t>`` and ``d/d beta_k^l = -sum_{tensors of l} <A_k^{t-1}, Delta_k^t>``
(A: the attention's output), zero where the weight is outside [0, 1] (the clip's gradient). A
client that did not take part in the previous round keeps its weights this round.

*What stays the client's own.* BatchNorm statistics (running means, variances and counts) are
buffers, not parameters: each client keeps its own, as in the authors' code.

State: ``personal:<id>`` holds each client's personalised encoder and decoders (sent to it alone,
counted in ``comm/bytes_down``); ``global`` and ``task:<t>`` hold the mean of the personalised
models, which a client starts from before it is first personalised (the paper has every client in
every round, so it does not say); ``server`` holds the hyper weights, their momentum, the last
direction d and the last attention outputs (never sent).

Choices where the paper is silent, and what differs from the authors' code: defences and DP are
refused (the aggregation is not a mean: clipping and noise would need their own analysis); the
conflict-averse solve uses the Gram matrix in float64 with the objective's exact gradient
(:mod:`mfed.aggregation.conflict`); a client's optimizer restarts every round, as every mfed
client's does (the authors keep AdamW's moments across rounds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mfed.aggregation.base import Strategy
from mfed.aggregation.conflict import cagrad_coefficients, combine, gram
from mfed.aggregation.contract import Declaration, whole_updates
from mfed.aggregation.functional import RunningMean, encoder_and_decoders, merge_scopes
from mfed.aggregation.stages import Combine, Combiner, OwnCombine, Parts, RoundContext, is_statistic
from mfed.models.multitask import ENCODER_PREFIX, MultiTaskModel, decoder_prefix
from mfed.types import (
    ClientUpdate,
    ServerState,
    State,
    global_scope,
    kind_of,
    personal_scope,
    shared_scopes_of,
    task_scope,
)

NAMESPACE = "fedhca2"  # its hyper weights, momenta and last outputs in the server scope


def layer_of(key: str) -> str:
    """The module a tensor belongs to: ``body.0.weight`` -> ``body.0``."""
    return key.rsplit(".", 1)[0]


class FedHCA2(Strategy):
    """Conflict-averse encoder aggregation, cross-attention decoder aggregation, learnt hyper weights.

    Args:
        ca_c: Radius of the conflict-averse ball relative to the mean update's norm (>= 0; 0.4 as
            the authors).
        alpha_init: Initial encoder hyper weight of every client (in [0, 1]).
        beta_init: Initial decoder hyper weight of every decoder layer (in [0, 1]).
        hyper_lr: Learning rate of the hyper weights' SGD (>= 0; 0 keeps them fixed).
        hyper_momentum: Its momentum (in [0, 1)).
        hyper_weight_decay: Its weight decay (>= 0).
        group_mean: Replace a client's own encoder update by the mean over the round's clients of
            its kind, as the authors' code does (``false``: its own update).
        local_keys: Decoder tensors (relative names' prefixes) that are never aggregated: the heads.
        weighting: ``examples`` or ``uniform`` (the kind's mean update and the scopes' means).
        name: Run and report name (see :class:`Strategy`).

    """

    name = "fedhca2"

    def __init__(
        self,
        ca_c: float = 0.4,
        alpha_init: float = 0.1,
        beta_init: float = 0.1,
        hyper_lr: float = 0.01,
        hyper_momentum: float = 0.9,
        hyper_weight_decay: float = 1e-4,
        group_mean: bool = True,
        local_keys: Sequence[str] = ("head.",),
        weighting: str = "examples",
        name: str | None = None,
    ) -> None:
        super().__init__(weighting, name)
        checks = {
            "ca_c": (ca_c, ca_c >= 0, ">= 0"),
            "alpha_init": (alpha_init, 0 <= alpha_init <= 1, "in [0, 1]"),
            "beta_init": (beta_init, 0 <= beta_init <= 1, "in [0, 1]"),
            "hyper_lr": (hyper_lr, hyper_lr >= 0, ">= 0"),
            "hyper_momentum": (hyper_momentum, 0 <= hyper_momentum < 1, "in [0, 1)"),
            "hyper_weight_decay": (hyper_weight_decay, hyper_weight_decay >= 0, ">= 0"),
        }
        for key, (value, ok, bound) in checks.items():
            if not ok:
                raise ValueError(f"aggregation.{key} must be {bound}, got {value}")
        self.ca_c, self.alpha_init, self.beta_init = float(ca_c), float(alpha_init), float(beta_init)
        self.hyper = Hyper(float(hyper_lr), float(hyper_momentum), float(hyper_weight_decay))
        self.group_mean, self.local_keys = bool(group_mean), tuple(str(k) for k in local_keys)

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The initial encoder and decoders: what every client starts from before it is personalised."""
        return encoder_and_decoders(model.state_dict(), model.tasks)

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder into ``global``, each decoder into its task's scope (their means; see the module doc)."""
        return [(global_scope(), (ENCODER_PREFIX,)), *((task_scope(t), (decoder_prefix(t),)) for t in tasks)]

    def declaration(self) -> Declaration:
        """Routes into shared scopes; combines whole updates by its own rule into personalised models."""
        why = "combines whole updates into personalised models by its own rule (conflict-averse and cross-attention)"
        return whole_updates(self.name, why)

    def combine(self) -> Combine:
        """Its own combine: the updates kept until the round's result, which needs every one at once."""
        return OwnCombine(self, _Round)


@dataclass(frozen=True)
class Hyper:
    """The hyper weights' SGD: ``buf <- momentum buf + (grad + weight_decay w)``, ``w <- w - lr buf``."""

    lr: float
    momentum: float
    weight_decay: float

    def step(self, weight: Tensor, grad: Tensor, buf: Tensor) -> tuple[Tensor, Tensor]:
        """The weight and momentum buffer after one step (torch.optim.SGD's rule, the buffer starting at 0)."""
        buf = self.momentum * buf + grad + self.weight_decay * weight
        return weight - self.lr * buf, buf


@dataclass
class _Client:
    client_id: str
    tasks: tuple[str, ...]
    weight: float
    start: State  # what it was sent, restricted to the keys it sent back
    update: State  # what it sent


def _dot(a: State, b: State) -> float:
    return float(sum(float((a[k].double() * b[k].double()).sum()) for k in a))


def _clip01(value: Tensor) -> float:
    return float(value.clamp(0.0, 1.0))


class _Round(Combiner):
    """One FedHCA2 round: updates kept as they arrive, combined in :meth:`result`."""

    def __init__(self, strategy: FedHCA2, ctx: RoundContext) -> None:
        self.strategy, self.ctx, self.state, self.round = strategy, ctx, ctx.state, ctx.round
        self.clients: list[_Client] = []

    def add(self, update: ClientUpdate, weight: float, parts: Parts) -> None:
        """Keep ``update`` with the model it started from (the fold keeps its private state)."""
        start = merge_scopes(self.state, shared_scopes_of(update.client_id, update.tasks))
        kept = {k: v for k, v in update.state.items() if k in start}
        self.clients.append(_Client(update.client_id, update.tasks, weight, {k: start[k] for k in kept}, kept))

    def _delta(self, c: _Client, prefix: str) -> State:
        """``c``'s update of the parameters under ``prefix`` (no BatchNorm statistics), in float64."""
        return {
            k: c.update[k].double() - c.start[k].double()
            for k in c.update
            if k.startswith(prefix) and not is_statistic(k) and c.update[k].is_floating_point()
        }

    def result(self) -> ServerState:
        """Personalised models for the round's clients, the scopes' means; the hyper weights' step kept."""
        if not self.clients:
            return {}
        server = dict(self.ctx.kept(NAMESPACE))
        encoders = [self._delta(c, ENCODER_PREFIX) for c in self.clients]
        decoders = {  # by the tensors' names within the decoder (``body.0.weight``)
            (c.client_id, t): {k[len(decoder_prefix(t)) :]: v for k, v in self._delta(c, decoder_prefix(t)).items()}
            for c in self.clients
            for t in c.tasks
        }
        metrics = self._learn(server, encoders, decoders)
        personal = {c.client_id: dict(c.update) for c in self.clients}  # heads and statistics: the client's own
        direction = self._encoders(personal, encoders, server, metrics)
        attention = self._decoders(personal, decoders, server)
        for c in self.clients:  # what the next round's hyper-weight step needs
            server[f"last/{c.client_id}"] = torch.tensor(float(self.round))
        server = {k: v for k, v in server.items() if not k.startswith(("direction/", "attention/"))}
        server.update({f"direction/{k}": v.float() for k, v in direction.items()})
        server.update(
            {f"attention/{c}/{t}/{k}": v.float() for (c, t), out in attention.items() for k, v in out.items()}
        )
        self.ctx.keep(NAMESPACE, server)
        self.ctx.metrics.update(metrics)
        new = {personal_scope(cid): model for cid, model in personal.items()}
        new.update(self._means(personal))
        return new

    def _alpha(self, server: State, client_id: str) -> Tensor:
        return server.get(f"alpha/{client_id}", torch.tensor(self.strategy.alpha_init))

    def _beta(self, server: State, client_id: str, task: str, layer: str) -> Tensor:
        return server.get(f"beta/{client_id}/{task}/{layer}", torch.tensor(self.strategy.beta_init))

    def _learn(self, server: State, encoders: list[State], decoders: dict[tuple[str, str], State]) -> dict[str, float]:
        """One SGD step of the hyper weights of the clients that took part in the previous round too."""
        hyper, moved = self.strategy.hyper, []
        direction = {k[len("direction/") :]: v for k, v in server.items() if k.startswith("direction/")}
        for c, delta in zip(self.clients, encoders, strict=True):
            last = server.get(f"last/{c.client_id}")
            if last is None or int(last) != self.round - 1:
                continue
            named = [(f"alpha/{c.client_id}", self._alpha(server, c.client_id), direction, delta)]
            for t in c.tasks:
                prefix = f"attention/{c.client_id}/{t}/"
                outputs = {k[len(prefix) :]: v for k, v in server.items() if k.startswith(prefix)}
                for layer in dict.fromkeys(layer_of(k) for k in outputs):
                    part = {k: v for k, v in outputs.items() if layer_of(k) == layer}
                    name = f"beta/{c.client_id}/{t}/{layer}"
                    named.append((name, self._beta(server, c.client_id, t, layer), part, decoders[(c.client_id, t)]))
            for name, weight, output, update in named:
                inside = 0.0 <= float(weight) <= 1.0  # the clip passes no gradient outside [0, 1]
                grad = torch.tensor(-_dot(output, {k: update[k] for k in output}) if inside and output else 0.0)
                weight, buf = hyper.step(weight, grad, server.get(f"momentum/{name}", torch.tensor(0.0)))
                server[name], server[f"momentum/{name}"] = weight, buf
                moved.append(name)
        alphas = [_clip01(self._alpha(server, c.client_id)) for c in self.clients]
        betas = [_clip01(v) for k, v in server.items() if k.startswith("beta/")] or [self.strategy.beta_init]
        return {"alpha_mean": sum(alphas) / len(alphas), "beta_mean": sum(betas) / len(betas),
                "hyper_steps": float(len(moved))}  # fmt: skip

    def _encoders(
        self, personal: dict[str, State], encoders: list[State], server: State, metrics: dict[str, float]
    ) -> State:
        """Each client's encoder: start + its kind's mean update + clip(alpha) d; returns d."""
        if not encoders[0]:
            return {}
        coefficients = cagrad_coefficients(gram(encoders), self.strategy.ca_c)
        direction = combine(encoders, coefficients)
        metrics["ca_norm"] = math.sqrt(_dot(direction, direction))
        own = encoders
        if self.strategy.group_mean:
            means: dict[str, RunningMean] = {}
            for c, delta in zip(self.clients, encoders, strict=True):
                means.setdefault(kind_of(c.tasks), RunningMean()).add(delta, c.weight, f"client {c.client_id}")
            kinds = {kind: mean.value() for kind, mean in means.items()}
            own = [kinds[kind_of(c.tasks)] for c in self.clients]
        for c, delta in zip(self.clients, own, strict=True):
            alpha = _clip01(self._alpha(server, c.client_id))
            for k, d in delta.items():
                value = c.start[k].double() + d + alpha * direction[k]
                personal[c.client_id][k] = value.to(c.update[k].dtype)
        return direction

    def _decoders(
        self, personal: dict[str, State], decoders: dict[tuple[str, str], State], server: State
    ) -> dict[tuple[str, str], State]:
        """Each decoder: start + its update + clip(beta) cross-attention over the round's decoders; returns A."""
        local = self.strategy.local_keys
        outputs: dict[tuple[str, str], State] = {k: {} for k in decoders}
        by_name: dict[tuple[str, tuple[int, ...]], list[tuple[str, str]]] = {}
        for owner, delta in decoders.items():
            for key, value in delta.items():
                if not key.startswith(local):
                    by_name.setdefault((key, tuple(value.shape)), []).append(owner)
        for (key, _), owners in by_name.items():
            stacked = torch.stack([decoders[o][key].reshape(-1) for o in owners])  # [K, numel]
            scores = torch.softmax(stacked @ stacked.T / math.sqrt(stacked.shape[1]), dim=-1)
            mixed = scores @ stacked
            for i, (cid, t) in enumerate(owners):
                outputs[(cid, t)][key] = mixed[i].reshape(decoders[(cid, t)][key].shape)
        starts = {c.client_id: c for c in self.clients}
        for (cid, t), out in outputs.items():
            c, prefix = starts[cid], decoder_prefix(t)
            for key, attended in out.items():
                beta = _clip01(self._beta(server, cid, t, layer_of(key)))
                full = prefix + key
                value = c.start[full].double() + decoders[(cid, t)][key] + beta * attended
                personal[cid][full] = value.to(c.update[full].dtype)
        return outputs

    def _means(self, personal: dict[str, State]) -> ServerState:
        """``global`` and ``task:<t>``: the weighted means of the personalised encoders and decoders."""
        means: dict[str, RunningMean] = {}
        for c in self.clients:
            for scope, prefixes in self.strategy.targets(c.tasks):
                part = {k: v for k, v in personal[c.client_id].items() if k.startswith(prefixes)}
                if part:
                    means.setdefault(scope, RunningMean()).add(part, c.weight, f"client {c.client_id}")
        return {scope: {**self.state.get(scope, {}), **mean.value()} for scope, mean in means.items()}
