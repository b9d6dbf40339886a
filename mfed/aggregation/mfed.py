"""M-Fed (arXiv 2504.09800): encoder averaged over all clients, decoders per task.

Round t, clients k with task tau(k) and n_k examples:
``theta_g <- sum_k w_k theta_k`` over all participating clients (cross-task knowledge) and
``phi_g^tau <- sum_{k: tau in T(k)} w_k phi_k^tau`` per task over every client holding it
(intra-task knowledge), with ``w_k = n_k / sum n_j`` (the project's choice; ``weighting=uniform``
is offered). A client holding several tasks T(k) trains one encoder on images carrying all their
targets, so its encoder counts once, with its n_k examples (the project's choice: its encoder is
one model trained on n_k images, however many targets they carry). Clients train
``weighting(L_tau for tau in T(k)) + mu/2 sum_tau ||phi^tau - phi_g^tau||^2``. A task without
participants keeps its decoder.

Ablations: ``mu=0`` (no proximal term), ``freeze_encoder=true`` (decoders trained on the fixed
initial encoder, which is never sent back), and private decoders (:class:`~mfed.aggregation.fedrep.FedRep`).
"""

from __future__ import annotations

from collections.abc import Sequence

from mfed.aggregation.base import Strategy
from mfed.aggregation.functional import encoder_and_decoders
from mfed.models.multitask import ENCODER_PREFIX, MultiTaskModel, decoder_prefix
from mfed.types import PARTS, LocalStep, ServerState, global_scope, task_scope


class MFed(Strategy):
    """Shared encoder over all tasks, per-task decoders, decoder proximal term.

    Args:
        mu: Strength of the local decoder proximal term (>= 0; 0 turns it off).
        freeze_encoder: Train only the decoders, on the initial encoder (an ablation).
        weighting: ``examples`` or ``uniform``.
        name: Run and report name (see :class:`Strategy`).

    """

    name = "mfed"

    def __init__(
        self,
        mu: float = 0.01,
        freeze_encoder: bool = False,
        weighting: str = "examples",
        name: str | None = None,
    ) -> None:
        super().__init__(weighting, name)
        if mu < 0:
            raise ValueError(f"aggregation.mu must be >= 0, got {mu}")
        self.prox_mu, self.freeze_encoder = float(mu), bool(freeze_encoder)

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """Train encoder and decoder (or the decoder alone) with the decoder pulled toward its task's global one."""
        trained = ("decoder",) if self.freeze_encoder else PARTS
        return (LocalStep(train=trained, prox=(("decoder", self.prox_mu),), sends=trained),)

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """Global encoder plus one decoder per task."""
        return encoder_and_decoders(model.state_dict(), model.tasks)

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder into the global scope (every client, once); each of its decoders into its task's scope."""
        decoders: list[tuple[str, tuple[str, ...]]] = [(task_scope(t), (decoder_prefix(t),)) for t in tasks]
        return decoders if self.freeze_encoder else [(global_scope(), (ENCODER_PREFIX,)), *decoders]
