"""FedDEA (Wei, Zou, Li and Du, 2025, arXiv 2505.24185): decoupled aggregation, a plug-in on FedAvg and FedProx.

The paper: "Towards Unified Modeling in Federated Multi-Task Learning via Subspace Decoupling".
**A reconstruction.** Only the paper's abstract and introduction could be reached here, and no
code was found; what they say: one unified global model for clients with heterogeneous tasks;
the aggregation "dynamically identifies task-relevant dimensions based on the response strength
of local updates and enhances their optimization effectiveness through rescaling", needs no task
labels or architectural change, and plugs into FedAvg, FedProx and others. Every rule below that
the abstract does not fix is ours, marked *(reconstructed)*; check it against Section 3 of the
paper before reporting FedDEA's numbers as the paper's.

Round t, client k sent the global model ``w`` and returns ``w_k``:

1. ``Delta_k = w_k - w`` over each routed part's floating parameters: the encoder, and each
   decoder it holds. BatchNorm statistics and integer counters are left as FedAvg folds them.
2. *Task-relevant dimensions* (reconstructed): the mask ``m_k`` keeps the ``ceil(rho n)`` entries
   of largest ``|Delta_k|`` among the ``n`` of a unit, ties by position; a unit is a whole part
   (``per: part``: the client's encoder, one decoder) or one tensor (``per: tensor``).
3. *Rescaling* (reconstructed; the paper's exact rule not reachable here), per unit:
   ``l2``: ``||Delta_k||_2 / ||m_k Delta_k||_2`` (the update's energy, its squared norm, kept;
   our default); ``l1``: ``sum |Delta_k| / sum |m_k Delta_k|``; ``rho``: ``1 / rho`` (DARE's
   factor); ``none``: 1. A unit whose kept entries are all 0 is left at 0.
4. Aggregate as the host does (reconstructed: FedAvg weights ``p_k``, a mean over every client
   of the scope, not over those whose mask holds a coordinate):
   ``w <- w + sum_k p_k Delta-hat_k``, the encoder over all the round's clients, each task's
   decoder over its holders (M-Fed's layout: one unified model, an encoder shared by every task
   and one decoder per task; decoders of different tasks are never mixed).

The host's local step: FedAvg (``mu = 0``), or FedProx (``mu > 0``: ``mu/2 ||w_k - w||^2`` over
the encoder and the decoders toward what was sent, the gradient flowing). Defaults
(reconstructed, the paper's not reachable): ``rho = 0.2`` (TIES-Merging's top-20 % trim, the
nearest published magnitude rule), ``rescale = l2``, ``per = part``, both parts decoupled.
``rho = 1`` is the host exactly.

**On the fold's stages.** Steps 1-3 act on one client's update against the state it was sent,
so they are the strategy's route (:meth:`FedDEA.route`): each part folds in as
``w + Delta-hat_k``. Everything after it sees the decoupled update: clipping bounds
``Delta-hat_k``, a robust rule or DP's mean combines it (the route is a function of one client's
update and the public state, so the joint clip still bounds what one client moves), and a server
optimiser takes the mean ``Delta-hat`` as its pseudo-gradient. Secure aggregation is refused: the
route needs each update in the clear. The scored model is the global one, as M-Fed's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mfed.aggregation.base import Strategy
from mfed.aggregation.contract import ROUTED, UPDATES, Declaration
from mfed.aggregation.functional import encoder_and_decoders
from mfed.aggregation.stages import Parts, floating_parameters
from mfed.models.multitask import ENCODER_PREFIX, MultiTaskModel, decoder_prefix
from mfed.types import PARTS as MODEL_PARTS
from mfed.types import ClientUpdate, LocalStep, ServerState, State, global_scope, task_scope

RESCALES = ("l2", "l1", "rho", "none")
UNITS = ("part", "tensor")


def top_mask(values: Tensor, rho: float) -> Tensor:
    """A boolean mask of the ``ceil(rho n)`` entries of ``values`` of largest magnitude (ties: the earlier)."""
    flat = values.reshape(-1)
    keep = min(flat.numel(), math.ceil(rho * flat.numel()))
    order = torch.argsort(flat.abs(), descending=True, stable=True)[:keep]
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order] = True
    return mask.reshape(values.shape)


def rescale_factor(delta: Tensor, kept: Tensor, rule: str, rho: float) -> float:
    """The factor the kept entries ``kept`` (``m * delta``) are multiplied by (see the module doc)."""
    if rule == "none":
        return 1.0
    if rule == "rho":
        return 1.0 / rho
    order = 2 if rule == "l2" else 1
    below = float(kept.norm(p=order))
    return float(delta.norm(p=order)) / below if below > 0 else 1.0


def decouple(delta: State, rho: float, rescale: str = "l2", per: str = "part") -> State:
    """FedDEA's decoupled update of one client's part: the top-``rho`` entries by magnitude, rescaled.

    Args:
        delta: The part's update, by key (float64; its floating parameters only).
        rho: The share of entries kept, in (0, 1].
        rescale: ``l2``, ``l1``, ``rho`` or ``none``.
        per: ``part`` (one mask and factor over all of ``delta``'s tensors) or ``tensor``.

    Returns:
        The decoupled update, by key.

    """
    if not delta:
        return {}
    units = [[k] for k in delta] if per == "tensor" else [list(delta)]
    out: State = {}
    for keys in units:
        flat = torch.cat([delta[k].reshape(-1) for k in keys])
        kept = flat * top_mask(flat, rho)
        kept = kept * rescale_factor(flat, kept, rescale, rho)
        offset = 0
        for k in keys:
            n = delta[k].numel()
            out[k] = kept[offset : offset + n].reshape(delta[k].shape)
            offset += n
    return out


class FedDEA(Strategy):
    """FedAvg or FedProx with each client's update decoupled before it is averaged (see the module doc).

    Args:
        rho: The share of each unit's update entries kept, by magnitude, in (0, 1] (1: the host).
        rescale: How the kept entries are rescaled: ``l2``, ``l1``, ``rho`` or ``none``.
        per: The unit of the mask and factor: ``part`` or ``tensor``.
        parts: The parts whose updates are decoupled (``encoder``, ``decoder``); the others fold as the host's.
        mu: The host's local step: 0 is FedAvg, > 0 FedProx's proximal strength.
        weighting: ``examples`` or ``uniform``.
        name: Run and report name (see :class:`Strategy`).

    """

    name = "feddea"

    def __init__(
        self,
        rho: float = 0.2,
        rescale: str = "l2",
        per: str = "part",
        parts: Sequence[str] = MODEL_PARTS,
        mu: float = 0.0,
        weighting: str = "examples",
        name: str | None = None,
    ) -> None:
        super().__init__(weighting, name)
        if not 0 < rho <= 1:
            raise ValueError(f"aggregation.rho must lie in (0, 1], got {rho}")
        if rescale not in RESCALES:
            raise ValueError(f"aggregation.rescale must be one of {RESCALES}, got {rescale!r}")
        if per not in UNITS:
            raise ValueError(f"aggregation.per must be one of {UNITS}, got {per!r}")
        chosen = (parts,) if isinstance(parts, str) else tuple(parts)
        if not chosen or not set(chosen) <= set(MODEL_PARTS) or len(set(chosen)) != len(chosen):
            raise ValueError(f"aggregation.parts must list distinct parts of {list(MODEL_PARTS)}, got {parts!r}")
        if mu < 0:
            raise ValueError(f"aggregation.mu must be >= 0, got {mu}")
        self.rho, self.rescale, self.per, self.parts = float(rho), rescale, per, chosen
        self.prox_mu = float(mu)

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """The host's step: train the whole model (FedProx: pulled toward what was sent) and send it."""
        prox = tuple((p, self.prox_mu) for p in MODEL_PARTS) if self.prox_mu > 0 else ()
        return (LocalStep(prox=prox, sends=MODEL_PARTS),)

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The global encoder and one decoder per task."""
        return encoder_and_decoders(model.state_dict(), model.tasks)

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder into ``global`` (every client), each decoder into its task's scope (its holders)."""
        return [(global_scope(), (ENCODER_PREFIX,)), *((task_scope(t), (decoder_prefix(t),)) for t in tasks)]

    def declaration(self) -> Declaration:
        """Routes into shared scopes like FedAvg; its route needs each update in the clear."""
        return Declaration(f"aggregation={self.name}", gives=ROUTED, needs=frozenset({UPDATES}))

    def route(self, update: ClientUpdate, state: ServerState) -> Parts:
        """Each part as ``sent + Delta-hat``: its update decoupled (top-``rho``, rescaled) where its part is chosen."""
        parts: Parts = []
        for scope, part in super().route(update, state):
            which = "encoder" if scope == global_scope() else "decoder"
            if which not in self.parts:
                parts.append((scope, part))
                continue
            sent = state[scope]
            keys = [k for k in floating_parameters(part) if k in sent]
            delta = decouple({k: part[k].double() - sent[k].double() for k in keys}, self.rho, self.rescale, self.per)
            parts.append((scope, {**part, **{k: (sent[k].double() + d).to(part[k].dtype) for k, d in delta.items()}}))
        return parts
