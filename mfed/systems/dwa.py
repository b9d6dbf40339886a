"""Dynamic Weight Average (DWA; Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019).

Task ``t``'s weight in epoch ``k`` follows the rate at which its loss fell over the two epochs before::

    w_t(k) = K exp(r_t(k-1) / T) / sum_i exp(r_i(k-1) / T),   r_t(k-1) = L_t(k-1) / L_t(k-2),

with ``K`` tasks, ``L_t(k)`` task ``t``'s mean loss over epoch ``k``, temperature ``T`` (2 in the
paper) and ``w_t = 1`` for the first two epochs. A task whose loss falls more slowly weighs more;
the weights sum to ``K``.

As LibMTL (``LibMTL/weighting/DWA.py``, after the paper's official code, lorenmt/mtan): the
weights are fixed for an epoch, set from the two epochs before it, ``K * softmax(r / T)``; 1 for
the first two epochs (LibMTL's ``epoch > 1``); ``L_t(k)`` is the example-weighted mean of the
loss the training batches gave during epoch ``k`` (LibMTL's ``train_loss_buffer``, no separate
pass). Choices LibMTL leaves open, made here:

* Which loss: the one the weighting combines, ``loss_weight * L_t``. The ratio does not depend
  on the constant ``loss_weight`` (LibMTL has none).
* A zero loss: LibMTL divides without a guard (``0 / 0`` gives NaN weights). Here a ratio whose
  earlier loss is not positive counts as 1 (the task's loss did not change).
* What an epoch is in a federation: one local training epoch of this client, counted over all
  its local fits, in every round it took part in (and every local step, e.g. Ditto's two, in the
  order it trained them). Each round's fit runs its own ``local_epochs`` epochs, but the history
  goes on: the first epoch of a round is weighted by the last two epochs the client trained
  before, whatever round they were in. So with ``local_epochs: 1`` DWA weighs from the client's
  third round on, by the ratio of its last two rounds' mean losses; that ratio also sees what
  aggregation did to the model in between. Resetting the history each round would leave the
  weights at 1 whenever ``local_epochs <= 2``.

Clients are stateless between rounds: the history (the last two epochs' mean losses, the number
of epochs seen) and the current weights are buffers, so they travel with the client's private
state (:func:`~mfed.systems.weighting.weighting_state`); a fresh object that loads them goes on
exactly where the last one stopped. The weights move only in :meth:`DWA.on_train_epoch_end`, so
nothing has to notice that a new fit, or a load, happened.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mfed.systems.weighting import Weighting

__all__ = ["DWA", "dwa_weights"]


def dwa_weights(last: Tensor, before: Tensor, temperature: float) -> Tensor:
    """``K softmax(r / T)`` with ``r = last / before`` (1 where ``before`` is not positive).

    Args:
        last: Each task's mean loss over the last epoch, ``L(k-1)``, shape ``(K,)``.
        before: Each task's mean loss over the epoch before, ``L(k-2)``, shape ``(K,)``.
        temperature: ``T`` (> 0): the larger, the closer the weights are to 1.

    Returns:
        The weights of epoch ``k``, shape ``(K,)``, summing to ``K``.

    """
    ratio = torch.where(before > 0, last / before.clamp_min(torch.finfo(before.dtype).tiny), torch.ones_like(last))
    return len(last) * torch.softmax(ratio / temperature, dim=0)


class DWA(Weighting):
    """Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019), as LibMTL's DWA (see the module).

    ``L = sum_t w_t L_t`` with ``w`` fixed through an epoch: 1 for the client's first two epochs,
    then :func:`dwa_weights` of the two epochs before. Buffers (state-dict keys, in task order):
    ``loss_history`` ``(2, K)``, the mean losses of the epochs ``k-2`` (row 0) and ``k-1`` (row 1);
    ``epochs``, how many epochs the client has trained (int64); ``weight`` ``(K,)``, the weights now.

    Args:
        tasks: The client's task names (non-empty, unique).
        temperature: ``T`` (config ``weighting.temperature``), finite and > 0; 2.0 as the paper.

    Raises:
        ValueError: Bad ``tasks``, or ``temperature`` is not a finite number > 0.

    """

    loss_history: Tensor
    epochs: Tensor
    weight: Tensor

    def __init__(self, tasks: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(tasks)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ValueError(f"weighting.temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = float(temperature)
        k = len(self.tasks)
        self.register_buffer("loss_history", torch.zeros(2, k))  # (2, K): epochs k-2, k-1
        self.register_buffer("epochs", torch.zeros((), dtype=torch.int64))
        self.register_buffer("weight", torch.ones(k))  # (K,)

    def extra_repr(self) -> str:
        """The tasks and the temperature, shown by ``repr``."""
        return f"{super().extra_repr()}, temperature={self.temperature}"

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        """``sum_t w_t losses[t]``, in task order, with this epoch's weights (no gradient through them).

        Args:
            losses: ``{task: scalar loss}``, each already multiplied by its task's ``loss_weight``;
                the keys must be exactly :attr:`tasks`.

        Returns:
            The combined scalar loss.

        Raises:
            ValueError: The keys of ``losses`` are not :attr:`tasks`.

        """
        self.check_losses(losses)
        weight = self.weight.to(device=losses[self.tasks[0]].device)
        total = weight[0] * losses[self.tasks[0]]
        for i, task in enumerate(self.tasks[1:], start=1):
            total = total + weight[i] * losses[task]
        return total

    def weights(self) -> dict[str, float]:
        """Each task's weight in the current epoch."""
        return dict(zip(self.tasks, self.weight.tolist(), strict=True))

    @torch.no_grad()
    def on_train_epoch_end(self, epoch_losses: Mapping[str, float]) -> None:
        """Record the epoch's mean losses and set the next epoch's weights from the last two.

        Args:
            epoch_losses: ``{task: mean loss}`` over the epoch (``loss_weight * L_t``); keys exactly
                :attr:`tasks`.

        Raises:
            ValueError: The keys of ``epoch_losses`` are not :attr:`tasks`.

        """
        self.check_losses(epoch_losses)
        history = self.loss_history
        latest = torch.tensor([float(epoch_losses[t]) for t in self.tasks], dtype=history.dtype)
        history.copy_(torch.stack([history[1], latest.to(history.device)]))
        self.epochs.add_(1)
        if int(self.epochs) >= 2:
            self.weight.copy_(dwa_weights(history[1], history[0], self.temperature))
