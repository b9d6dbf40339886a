"""A shared representation with personal heads (FedRep / FedPer): one encoder, each client's own decoder.

The encoder is averaged over all clients. Clients of every task train the encoder and their
decoder jointly (FedPer; FedRep's alternating schedule is not used) and send only the encoder;
the decoder comes back as private state, held by the driver under ``client:<id>`` and never
averaged, so decoders never cross clients, even within a task. It is also M-Fed's "no decoder
aggregation" ablation (configs ``aggregation=fedrep`` and ``aggregation=mfed_private_decoders``).
"""

from __future__ import annotations

from collections.abc import Sequence

from mfed.aggregation.base import Strategy
from mfed.aggregation.functional import select
from mfed.models.multitask import ENCODER_PREFIX, MultiTaskModel
from mfed.types import PARTS, LocalStep, ServerState, global_scope


class FedRep(Strategy):
    """Encoder over all clients; decoders private to each client.

    Args:
        weighting: ``examples`` or ``uniform``.
        name: Run and report name (see :class:`Strategy`).

    """

    name = "fedrep"

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """Train both parts (its own decoder, the initial one in round 1); send the encoder, keep the decoder."""
        return (LocalStep(train=PARTS, sends=("encoder",), keeps=("decoder",)),)

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The global encoder; decoders start as each client's initial one."""
        return {global_scope(): select(model.state_dict(), [ENCODER_PREFIX])}

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder into the global scope, from every client."""
        return [(global_scope(), (ENCODER_PREFIX,))]
