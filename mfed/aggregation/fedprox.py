"""FedProx (Li et al., 2020) within each task: FedAvg per task with a proximal term on the whole model.

Clients minimise ``L_task + mu/2 ||w - w_g^tau||^2`` over their whole model ``w`` (encoder and
decoder) toward the task's global model; the server averages each task group's models as
:class:`~mfed.aggregation.fedavg.FedAvgPerTask` does. ``mu=0`` is FedAvg per task. The gradient
of the term flows through ``w`` (see :mod:`mfed.systems.regularisers`).
"""

from __future__ import annotations

from mfed.aggregation.fedavg import FedAvgPerTask
from mfed.types import PARTS, LocalStep


class FedProx(FedAvgPerTask):
    """FedAvg per task; clients pull their whole model toward the task's global one.

    Args:
        mu: Strength of the proximal term (>= 0).
        weighting: ``examples`` or ``uniform``.
        name: Run and report name (see :class:`Strategy`).

    """

    name = "fedprox"

    def __init__(
        self,
        mu: float = 0.01,
        weighting: str = "examples",
        name: str | None = None,
    ) -> None:
        super().__init__(weighting, name)
        if mu < 0:
            raise ValueError(f"aggregation.mu must be >= 0, got {mu}")
        self.prox_mu = float(mu)

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """Train the whole model with both parts pulled toward the task's global model; send it."""
        return (LocalStep(prox=tuple((p, self.prox_mu) for p in PARTS), sends=PARTS),)
