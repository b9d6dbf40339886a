"""Ditto (Li et al., 2021): a personal model per client, regularised toward the federated one.

Each round a client runs two local steps from what the server sent:

1. the federated step: train the task's global model on its data and send it (the global models
   are FedAvg per task, as :class:`~mfed.aggregation.fedavg.FedAvgPerTask`);
2. the personal step: train its own model (the global one in its first round) on
   ``L_task + lam/2 ||v - w_g^tau||^2`` and keep it.

Evaluation scores the personal model. Its training losses appear as ``personal_loss`` next to
the federated step's ``loss``. The personal models are the clients' private state, held by
the driver under ``client:<id>``, so Ditto checkpoints and resumes like every strategy.
"""

from __future__ import annotations

from mfed.aggregation.fedavg import FedAvgPerTask
from mfed.types import PARTS, LocalStep


class Ditto(FedAvgPerTask):
    """FedAvg per task for the global models; a personal model per client pulled toward its task's.

    Args:
        lam: Strength of the personal model's proximal term toward the global model (>= 0).
        personal_epochs: Local epochs of the personal step; ``None``: ``federation.local_epochs``.
        weighting: ``examples`` or ``uniform``.
        name: Run and report name (see :class:`Strategy`).

    """

    name = "ditto"

    def __init__(
        self,
        lam: float = 0.1,
        personal_epochs: int | None = None,
        weighting: str = "examples",
        name: str | None = None,
    ) -> None:
        super().__init__(weighting, name)
        if lam < 0:
            raise ValueError(f"aggregation.lam must be >= 0, got {lam}")
        if personal_epochs is not None and personal_epochs < 1:
            raise ValueError(f"aggregation.personal_epochs must be >= 1 or null, got {personal_epochs}")
        self.prox_mu, self.personal_epochs = float(lam), personal_epochs

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """The federated step, then the personal one."""
        personal = LocalStep(
            start="own",
            prox=tuple((p, self.prox_mu) for p in PARTS),
            keeps=PARTS,
            epochs=self.personal_epochs,
            name="personal",
        )
        return (LocalStep(sends=PARTS), personal)
