"""M-Fed (arXiv 2504.09800): encoder averaged over all clients, decoders per task.

Round t, clients k with task tau(k) and n_k examples:
``theta_g <- sum_k w_k theta_k`` over all participating clients (cross-task knowledge) and
``phi_g^tau <- sum_{k: tau(k)=tau} w_k phi_k`` per task (intra-task knowledge), with
``w_k = n_k / sum n_j`` (the project's choice; ``weighting=uniform`` is offered). Clients train
``L_task + mu/2 ||phi - phi_g^tau||^2``. A task without participants keeps its decoder.

Ablations: ``mu=0`` (no proximal term), ``freeze_encoder=true`` (decoders trained on the fixed
initial encoder, which is never sent back), and private decoders (:class:`~mfed.aggregation.fedrep.FedRep`).
"""

from __future__ import annotations

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
        clip_norm, robust, trim_fraction: Defences against bad updates (see :class:`Strategy`).
        name: Run and report name (see :class:`Strategy`).

    """

    name = "mfed"

    def __init__(
        self,
        mu: float = 0.01,
        freeze_encoder: bool = False,
        weighting: str = "examples",
        clip_norm: float | None = None,
        robust: str | None = None,
        trim_fraction: float = 0.1,
        name: str | None = None,
    ) -> None:
        super().__init__(weighting, clip_norm, robust, trim_fraction, name)
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

    def targets(self, task: str) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder into the global scope (every client); the decoder into its task's scope."""
        decoder = (task_scope(task), (decoder_prefix(task),))
        return [decoder] if self.freeze_encoder else [(global_scope(), (ENCODER_PREFIX,)), decoder]

    def __repr__(self) -> str:
        text = super().__repr__()
        return text[:-1] + ", freeze_encoder=True)" if self.freeze_encoder else text
