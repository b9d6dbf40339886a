"""MaT-FL (Cai et al., 2023, "Many-Task Federated Learning", code VITA-Group/MaT-FL): dynamic grouping of encoders.

Each round, from the encoders ``w_i`` the round's clients sent (:func:`group_encoders`):

1. ``soup = mean_j w_j`` and ``delta_i = w_i - soup``, flattened over the encoder's parameters
   (the deviation of the current encoders from their mean, as the authors' ``get_grouping_score``,
   not the round's update);
2. agglomerative clustering of the ``delta_i`` with cosine distance and average linkage into
   ``clusters`` groups (:func:`cluster`; 2 by default, the authors' ``--cluster_num``; the tree
   from :func:`scipy.cluster.hierarchy.linkage`, cut after its first ``N - clusters`` merges, as
   scikit-learn's ``AgglomerativeClustering`` does);
3. each client's new encoder is the mean of its group's encoders.

The grouping is recomputed every round over the whole encoder at once (the code clusters once
over all backbone parameters, not layer by layer as the README says). Decoders are never
aggregated: each client trains its own and keeps it as private state (``client:<id>``), as in
the authors' code, where heads never leave the client.

**State, and what is scored.** ``personal:<id>`` holds the client's group's mean encoder (sent
to it alone); ``global`` the mean of the round's encoders (the soup), which a client starts from
before it is first grouped (the authors have every client in every round). A client trains and
is scored with its personalised model: its ``personal:<id>`` encoder with its own decoders.

**BatchNorm statistics (our choice).** The authors' code puts the running means and variances in
the clustering vector (``'backbone' in k and 'num' not in k`` over ``state_dict()``); FMTL-Bench's
port clusters ``named_parameters()`` only. We cluster the floating parameters only: the
statistics are estimates of activation moments, not trained weights, their scale has nothing to
do with the weights' (a variance of order 1 beside weight deviations of order 1e-3 would decide
the cosine on its own), and they follow the weights anyway. They are averaged within the group
like the weights (as the authors' code does), integer counters to the rounded mean.

Choices where the paper is silent: ``weighting`` (default ``uniform``, the authors' plain mean)
weights the soup and the group means; a delta of norm 0 is at cosine distance 1 from every other
(scikit-learn refuses it); with no more clients than ``clusters`` each client is its own group.
Defences, DP, secure aggregation and a server optimiser are refused (:meth:`MaTFL.declaration`):
the grouping needs each encoder in the clear, and its means are personalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.cluster.hierarchy import linkage
from torch import Tensor

from mfed.aggregation.base import Strategy
from mfed.aggregation.contract import Declaration, whole_updates
from mfed.aggregation.functional import RunningMean, select
from mfed.aggregation.stages import Combine, Combiner, OwnCombine, Parts, RoundContext, floating_parameters
from mfed.models.multitask import ENCODER_PREFIX, MultiTaskModel
from mfed.types import PARTS as MODEL_PARTS
from mfed.types import ClientUpdate, LocalStep, ServerState, State, global_scope, personal_scope


def cosine_distances(vectors: Tensor) -> np.ndarray:
    """The condensed (``scipy``) cosine distances ``1 - cos`` between the rows of ``vectors`` (float64).

    A row of norm 0 is at distance 1 from every other (its cosine taken as 0).
    """
    x = vectors.double()
    norms = x.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, x / norms.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(x))
    d = (1.0 - unit @ unit.T).clamp(0.0, 2.0).numpy()
    i, j = np.triu_indices(len(x), k=1)
    return np.asarray(d[i, j])


def cluster(vectors: Tensor, clusters: int) -> list[int]:
    """Labels of the rows of ``vectors`` under average-linkage agglomerative clustering on cosine distance.

    Args:
        vectors: ``(N, D)``, one row per client.
        clusters: The number of groups (>= 1); with ``N <= clusters`` every row is its own.

    Returns:
        One label per row, numbered by first appearance (the first row's group is 0).

    """
    n = len(vectors)
    if n <= clusters:
        return list(range(n))
    tree = linkage(cosine_distances(vectors), method="average")
    groups: dict[int, list[int]] = {i: [i] for i in range(n)}
    for m in range(n - clusters):  # merge in the tree's order until ``clusters`` groups are left
        a, b = int(tree[m, 0]), int(tree[m, 1])
        groups[n + m] = groups.pop(a) + groups.pop(b)
    owner = {i: g for g, members in groups.items() for i in members}
    numbered: dict[int, int] = {}
    return [numbered.setdefault(owner[i], len(numbered)) for i in range(n)]


def group_encoders(
    encoders: Sequence[State], weights: Sequence[float], clusters: int
) -> tuple[list[State], State, list[int]]:
    """MaT-FL's aggregation of one round's encoders (see the module doc).

    Args:
        encoders: The round's encoders (same keys and shapes), one per client.
        weights: Their weights in the soup and the group means.
        clusters: The number of groups.

    Returns:
        Each client's new encoder (its group's mean), the soup (the weighted mean of all) and the labels.

    """
    soup_mean = RunningMean()
    for i, (encoder, weight) in enumerate(zip(encoders, weights, strict=True)):
        soup_mean.add(encoder, weight, f"encoder {i}")
    soup = soup_mean.value()
    keys = floating_parameters(encoders[0])
    exact = {k: sum(w * e[k].double() for e, w in zip(encoders, weights, strict=True)) / sum(weights) for k in keys}
    deltas = torch.stack([torch.cat([(e[k].double() - exact[k]).reshape(-1) for k in keys]) for e in encoders])
    labels = cluster(deltas, clusters)
    means: dict[int, RunningMean] = {}
    for i, (encoder, weight, label) in enumerate(zip(encoders, weights, labels, strict=True)):
        means.setdefault(label, RunningMean()).add(encoder, weight, f"encoder {i}")
    values = {label: mean.value() for label, mean in means.items()}
    return [values[label] for label in labels], soup, labels


class MaTFL(Strategy):
    """Encoders averaged within groups found each round by clustering; decoders private to each client.

    Args:
        clusters: The number of groups (>= 1; 2 as the authors).
        weighting: ``uniform`` (the authors' plain mean) or ``examples``.
        name: Run and report name (see :class:`Strategy`).

    """

    name = "matfl"

    def __init__(self, clusters: int = 2, weighting: str = "uniform", name: str | None = None) -> None:
        super().__init__(weighting, name)
        if isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 1:
            raise ValueError(f"aggregation.clusters must be an integer >= 1, got {clusters!r}")
        self.clusters = clusters

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """Train its personalised encoder and its own decoders; send the encoder, keep the decoders."""
        return (LocalStep(train=MODEL_PARTS, sends=("encoder",), keeps=("decoder",)),)

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The initial encoder; decoders start as each client's initial ones."""
        return {global_scope(): select(model.state_dict(), [ENCODER_PREFIX])}

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder, from every client (grouped in the combine)."""
        return [(global_scope(), (ENCODER_PREFIX,))]

    def declaration(self) -> Declaration:
        """Needs every encoder in the clear; its combine is a personalised group mean, not a bounded mean."""
        why = "groups whole encoders by clustering them and sends each client its group's mean"
        return whole_updates(self.name, why)

    def combine(self) -> Combine:
        """Its own combine: the round's encoders kept until its result, which clusters all of them."""
        return OwnCombine(self, _Round)


class _Round(Combiner):
    """One MaT-FL round: the encoders kept as they arrive, grouped in :meth:`result`."""

    def __init__(self, strategy: MaTFL, ctx: RoundContext) -> None:
        self.strategy, self.ctx = strategy, ctx
        self.members: list[tuple[str, float, State]] = []

    def add(self, update: ClientUpdate, weight: float, parts: Parts) -> None:
        self.members += [(update.client_id, weight, part) for scope, part in parts if scope == global_scope()]

    def result(self) -> ServerState:
        """Each client's group mean under ``personal:<id>``; ``global``: the soup."""
        if not self.members:
            return {}
        ids = [cid for cid, _, _ in self.members]
        grouped, soup, labels = group_encoders(
            [m for _, _, m in self.members], [w for _, w, _ in self.members], self.strategy.clusters
        )
        sizes = [labels.count(label) for label in set(labels)]
        self.ctx.metrics.update({"groups": float(len(sizes)), "largest_group": float(max(sizes))})
        self.ctx.metrics.update({f"group/{cid}": float(label) for cid, label in zip(ids, labels, strict=True)})
        out: ServerState = {global_scope(): {**self.ctx.state.get(global_scope(), {}), **soup}}
        out.update({personal_scope(cid): encoder for cid, encoder in zip(ids, grouped, strict=True)})
        return out
