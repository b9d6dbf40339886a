"""FedAvg within each task (McMahan et al., 2017), no cross-task sharing.

Each task group is an independent federation: its clients average their whole model (encoder
and decoder) weighted by examples. This is the per-task FedAvg baseline, not the "FedAvg" of
FedHCA2 / FMTL-Bench that averages all tasks' decoders into one.

A client holding several tasks takes part in each of its tasks' federations: it starts its
encoder from the mean of those tasks' encoders (see :func:`mfed.aggregation.functional.merge_scopes`),
trains it with all its decoders, and its encoder folds into every one of its tasks' models, each
decoder into its own task's (the project's choice).
"""

from __future__ import annotations

from collections.abc import Sequence

from mfed.aggregation.base import Strategy
from mfed.aggregation.functional import select
from mfed.models.multitask import ENCODER_PREFIX, MultiTaskModel, decoder_prefix
from mfed.types import ServerState, task_scope


class FedAvgPerTask(Strategy):
    """One FedAvg federation per task: encoder and decoder averaged within the task group.

    Args:
        weighting: ``examples`` or ``uniform``.
        name: Run and report name (see :class:`Strategy`).

    """

    name = "fedavg"

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """One full model (encoder + the task's decoder) per task."""
        full = model.state_dict()
        return {task_scope(t): select(full, [ENCODER_PREFIX, decoder_prefix(t)]) for t in model.tasks}

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder and each task's decoder into that task's scope; other tasks keep theirs."""
        return [(task_scope(t), (ENCODER_PREFIX, decoder_prefix(t))) for t in tasks]
