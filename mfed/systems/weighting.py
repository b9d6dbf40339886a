"""How a client holding several tasks combines their losses into the one objective it minimises.

A client may hold several tasks (e.g. semseg, depth, edges) on the same images: one shared
encoder, one decoder per task. Each training batch gives one loss per task, ``L_t``, already
multiplied by the task's ``loss_weight``. A *weighting method* (LibMTL's name for it) turns them
into the objective, and may also decide how the objective's gradient reaches the shared encoder:

* :class:`Equal` (LibMTL's EW): ``L = sum_t L_t``.
* :class:`Uncertainty` (LibMTL's UW; Kendall, Gal and Cipolla, "Multi-Task Learning Using
  Uncertainty to Weigh Losses for Scene Geometry and Semantics", CVPR 2018): one learned
  log-variance ``s_t`` per task and ``L = sum_t L_t / (2 exp(s_t)) + s_t / 2``, so a task's
  effective weight is ``1 / (2 exp(s_t))`` and ``dL/ds_t = -L_t / (2 exp(s_t)) + 1/2``.
* :class:`PCGrad` (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020):
  ``L = sum_t L_t``, but the shared parameters' gradient of the task terms is
  ``sum_i g_i'``, where ``g_i'`` is task ``i``'s gradient ``g_i`` with its conflicting
  components removed: for every other task ``j`` in a random order, if ``g_i' . g_j < 0``,
  ``g_i' <- g_i' - (g_i' . g_j) / ||g_j||^2 * g_j``.

:class:`~mfed.systems.dwa.DWA` (Dynamic Weight Average, Liu et al. 2019) lives in its own module.

A weighting's ``state_dict``, parameters and buffers alike (Uncertainty's ``log_var``, DWA's
epoch-loss history), is the client's private state: the client's optimizer trains the parameters
with its model, none of it is aggregated, and between rounds it travels through the server as
``weighting.*`` keys (:func:`weighting_state`, :func:`load_weighting_state`), since a client keeps
nothing of its own from one round to the next. The client's LightningModule calls the hooks
:meth:`Weighting.on_fit_start`, :meth:`Weighting.on_train_epoch_end` (with the epoch's mean
losses) and :meth:`Weighting.on_fit_end` around each local fit, after the state is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

WEIGHTING_PREFIX = "weighting."
"""Prefix of a weighting's entries in the client state that travels through the server."""

__all__ = [
    "WEIGHTING_PREFIX",
    "Equal",
    "PCGrad",
    "Uncertainty",
    "Weighting",
    "WeightingFactory",
    "load_weighting_state",
    "weighting_state",
]


class Weighting(nn.Module):
    """Base: combines a client's per-task losses into the one objective it minimises.

    Args:
        tasks: The client's task names, in the order the weighting keeps them (non-empty, unique).

    Raises:
        ValueError: ``tasks`` is empty, a string, or holds a non-string, empty or repeated name.

    """

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        if isinstance(tasks, str | bytes):
            raise ValueError(f"weighting.tasks must be a sequence of task names, not the string {tasks!r}")
        names = tuple(tasks)
        if not names:
            raise ValueError("weighting.tasks must name at least one task, got none")
        seen: set[str] = set()
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"weighting.tasks must hold non-empty task names, got {name!r}")
            if name in seen:
                raise ValueError(f"weighting.tasks names task {name!r} more than once: {list(names)}")
            seen.add(name)
        self.tasks: tuple[str, ...] = names

    def extra_repr(self) -> str:
        """The tasks, shown by ``repr``."""
        return f"tasks={list(self.tasks)}"

    def check_losses(self, losses: Mapping[str, object]) -> None:
        """Check that ``losses`` has exactly one entry per task.

        Args:
            losses: ``{task: loss}``.

        Raises:
            ValueError: A task has no loss, or a loss is for a task the weighting does not know.

        """
        missing = [t for t in self.tasks if t not in losses]
        extra = [t for t in losses if t not in self.tasks]
        if missing or extra:
            raise ValueError(
                f"the losses must be for exactly the weighting's tasks {list(self.tasks)}: "
                f"missing {missing}, extra {extra}"
            )

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The objective: here the sum of the losses, in task order, starting from the first.

        Args:
            losses: ``{task: scalar loss}``, each already multiplied by its task's ``loss_weight``;
                the keys must be exactly :attr:`tasks`.

        Returns:
            The combined scalar loss (for a single task, that task's loss itself).

        Raises:
            ValueError: The keys of ``losses`` are not :attr:`tasks` (names the missing/extra ones).

        """
        self.check_losses(losses)
        total = losses[self.tasks[0]]
        for task in self.tasks[1:]:
            total = total + losses[task]
        return total

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """Same as :meth:`combine`."""
        return self.combine(losses)

    def backward(self, loss: Tensor, losses: Mapping[str, Tensor], shared: Sequence[nn.Parameter]) -> None:
        """Fill the ``.grad`` of every parameter ``loss`` depends on: here plainly ``loss.backward()``.

        Args:
            loss: ``combine(losses)`` plus any other terms (e.g. a proximal regulariser).
            losses: The per-task losses ``loss`` was combined from (as given to :meth:`combine`).
            shared: The trainable parameters shared by all tasks (the encoder's); may be empty.

        """
        loss.backward()

    def weights(self) -> dict[str, float]:
        """The current effective weight of each task (logged as ``<task>/weight``): 1.0 each here."""
        return dict.fromkeys(self.tasks, 1.0)

    def on_fit_start(self) -> None:
        """A local fit starts (its state already loaded from the client's private state): a no-op here."""

    def on_train_epoch_end(self, epoch_losses: Mapping[str, float]) -> None:
        """An epoch of a local fit ended: a no-op here.

        Per epoch rather than once per fit, because a fit runs ``local_epochs`` epochs and an
        epoch-level method (DWA) moves its weights after every one of them.

        Args:
            epoch_losses: ``{task: mean loss}`` over the epoch's examples, each the loss given to
                :meth:`combine` (already multiplied by the task's ``loss_weight``); keys exactly
                :attr:`tasks`.

        """

    def on_fit_end(self) -> None:
        """A local fit ended (its state is then saved to the client's private state): a no-op here."""


WeightingFactory = Callable[[Sequence[str]], Weighting]
"""What a config's weighting instantiates to (a Hydra partial): called with the client's task names."""


class Equal(Weighting):
    """Equal weighting (LibMTL's EW): the objective is the sum of the (``loss_weight``-scaled) losses.

    Like LibMTL's EW, but summed rather than through ``losses.sum()`` of a stacked tensor: the sum
    starts from the first task's loss, so a single task's objective is its loss tensor itself.

    Args:
        tasks: The client's task names (non-empty, unique).

    """


class Uncertainty(Weighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018), as LibMTL's UW.

    ``L = sum_t L_t / (2 exp(s_t)) + s_t / 2`` with one learned log-variance ``s_t`` per task,
    kept as the single parameter ``log_var`` of shape ``(len(tasks),)`` in task order. The
    client's optimizer trains it with the model. As LibMTL's UW (the same form for every task,
    rather than the paper's separate forms for regression and classification losses), except that
    ``s_t`` starts at ``init`` (default 0.0: every weight 1/2), where LibMTL starts it at -0.5
    (every weight ``e^{0.5} / 2`` ~ 0.82), and that it is a module parameter, so it moves with the
    model and is saved in its ``state_dict``.

    Args:
        tasks: The client's task names (non-empty, unique).
        init: The starting log-variance of every task (config ``weighting.init``), finite.

    Raises:
        ValueError: Bad ``tasks``, or ``init`` is not a finite number.

    """

    def __init__(self, tasks: Sequence[str], init: float = 0.0) -> None:
        super().__init__(tasks)
        if isinstance(init, bool) or not isinstance(init, int | float) or not math.isfinite(init):
            raise ValueError(f"weighting.init must be a finite number, got {init!r}")
        self.log_var = nn.Parameter(torch.full((len(self.tasks),), float(init)))

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        """``sum_t losses[t] / (2 exp(s_t)) + s_t / 2``, in task order.

        Args:
            losses: ``{task: scalar loss}``, each already multiplied by its task's ``loss_weight``;
                the keys must be exactly :attr:`tasks`.

        Returns:
            The combined scalar loss, differentiable in the losses and in ``log_var``.

        Raises:
            ValueError: The keys of ``losses`` are not :attr:`tasks`.

        """
        self.check_losses(losses)
        log_var = self.log_var.to(device=losses[self.tasks[0]].device)
        terms = [losses[t] / (2 * torch.exp(log_var[i])) + log_var[i] / 2 for i, t in enumerate(self.tasks)]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    def weights(self) -> dict[str, float]:
        """Each task's current effective weight ``1 / (2 exp(s_t))``."""
        values = (1 / (2 * torch.exp(self.log_var.detach()))).tolist()
        return dict(zip(self.tasks, values, strict=True))


class PCGrad(Weighting):
    """Projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020).

    The objective is the plain sum (as :class:`Equal`); :meth:`backward` reshapes the shared
    parameters' gradient. As LibMTL's PCGrad: the per-task gradients ``g_t`` of the shared
    parameters, flattened; for each task ``i``, ``g_i'`` starts as ``g_i`` and, for the other
    tasks ``j`` in a random order, drops its component along ``g_j`` when ``g_i' . g_j < 0``
    (projected onto the original ``g_j``); the shared gradient of the task terms becomes
    ``sum_i g_i'``. Differences from LibMTL: the order is drawn by ``torch.randperm`` from torch's
    global generator (LibMTL: Python's ``random.shuffle``), so seeding torch fixes it; the
    projection does not wait for the device (no ``if`` on a tensor); the task-specific parameters
    (decoders) get their gradients from one ``loss.backward()`` instead of one backward per task;
    and terms of ``loss`` besides the tasks' (e.g. a proximal regulariser) keep their own,
    unprojected gradient on the shared parameters.

    Task ``i`` itself: LibMTL's inner loop (``LibMTL/weighting/PCGrad.py``, ``for tn_j in
    task_index``, a shuffle of all the tasks) includes ``j = i``, so on its own turn ``g_i'`` is
    projected off its own ``g_i`` when ``g_i' . g_i < 0``. mfed, like the paper's Algorithm 1
    (``T_j`` over the tasks but ``T_i``), skips ``j = i``. This changes nothing for two tasks (one
    projection leaves ``g_i' . g_i = ||g_i||^2 - (g_i . g_j)^2 / ||g_j||^2 >= 0``) nor when ``i``'s
    own turn comes first, but with three or more tasks earlier projections can turn ``g_i'``
    against ``g_i`` (about 1.4% of the own turns for three random Gaussian gradients in 2 or 3
    dimensions). LibMTL also adds 1e-8 to ``||g_j||^2`` (here ``g_i' . g_j < 0`` implies
    ``||g_j|| > 0``), and reports each task's total coefficient in ``sum_i g_i'`` as its weight,
    where :meth:`weights` reports 1 per task.

    Args:
        tasks: The client's task names (non-empty, unique).

    """

    def backward(self, loss: Tensor, losses: Mapping[str, Tensor], shared: Sequence[nn.Parameter]) -> None:
        """``loss.backward()``, then the shared parameters' task gradient replaced by the projected one.

        Each shared parameter's gradient becomes ``grad - sum_t g_t + sum_t g_t'``: the
        projected sum for the task terms, while the other terms' gradient stays. With fewer than
        two tasks, or no shared parameter that requires a gradient, a plain ``loss.backward()``.

        Args:
            loss: ``combine(losses)`` plus any other terms (e.g. a proximal regulariser).
            losses: The per-task losses ``loss`` was combined from; keys exactly :attr:`tasks`.
            shared: The trainable parameters shared by all tasks (the encoder's); may be empty.

        Raises:
            ValueError: The keys of ``losses`` are not :attr:`tasks`.

        """
        self.check_losses(losses)
        params = _unique_trainable(shared)
        if len(self.tasks) < 2 or not params:
            loss.backward()
            return
        dtype = params[0].dtype
        for param in params[1:]:
            dtype = torch.promote_types(dtype, param.dtype)
        grads = torch.stack([self._task_grad(losses[t], params, dtype) for t in self.tasks])  # (T, D)
        projected = _project_conflicts(grads)
        correction = projected.sum(0) - grads.sum(0)
        loss.backward()
        offset = 0
        for param in params:
            size = param.numel()
            delta = correction[offset : offset + size].view_as(param).to(param.dtype)
            offset += size
            if param.grad is None:  # no task term reached it (else ``loss`` would have): nothing to change
                continue
            param.grad.add_(delta)

    @staticmethod
    def _task_grad(task_loss: Tensor, params: list[nn.Parameter], dtype: torch.dtype) -> Tensor:
        """One task's gradient of ``params``, flattened in ``dtype`` (zeros where unused)."""
        found: Sequence[Tensor | None] = [None] * len(params)  # e.g. a constant loss: no gradient
        if task_loss.requires_grad:
            found = torch.autograd.grad(task_loss, params, retain_graph=True, allow_unused=True)
        flat = [
            (g if g is not None else torch.zeros_like(p)).reshape(-1).to(dtype)
            for g, p in zip(found, params, strict=True)
        ]
        return torch.cat(flat)


def _unique_trainable(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """``params`` that require a gradient, each once, in order."""
    seen: set[int] = set()
    out = []
    for param in params:
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            out.append(param)
    return out


def _project_conflicts(grads: Tensor) -> Tensor:
    """PCGrad's projection of every row of ``grads`` (``(T, D)``, one task's gradient a row)."""
    n = grads.shape[0]
    sq_norms = (grads * grads).sum(1)
    projected = grads.clone()
    for i in range(n):
        g_i = projected[i]
        for j in torch.randperm(n).tolist():
            if j == i:
                continue
            dot = torch.dot(g_i, grads[j])
            scale = torch.where(dot < 0, dot / sq_norms[j], torch.zeros_like(dot))  # dot < 0 implies ||g_j|| > 0
            g_i -= scale * grads[j]
    return projected


def weighting_state(weighting: Weighting) -> dict[str, Tensor]:
    """The weighting's private state, to travel through the server between rounds.

    Args:
        weighting: The client's weighting.

    Returns:
        ``{"weighting." + key: value}`` of its ``state_dict``, detached copies on the CPU
        (empty for :class:`Equal` and :class:`PCGrad`).

    """
    return {WEIGHTING_PREFIX + k: v.detach().cpu().clone() for k, v in weighting.state_dict().items()}


def load_weighting_state(weighting: Weighting, state: Mapping[str, Tensor]) -> None:
    """Load the ``weighting.*`` entries of ``state`` into ``weighting``; other entries are ignored.

    With no ``weighting.*`` entry, ``weighting`` is left unchanged (e.g. the first round).

    Args:
        weighting: The client's weighting.
        state: A client state, e.g. from :func:`weighting_state`.

    Raises:
        ValueError: The ``weighting.*`` keys are not exactly the weighting's (names the missing
            and unexpected ones), or a value's shape differs from the weighting's.

    """
    selected = {k[len(WEIGHTING_PREFIX) :]: v for k, v in state.items() if k.startswith(WEIGHTING_PREFIX)}
    if not selected:
        return
    own = weighting.state_dict()
    missing = sorted(WEIGHTING_PREFIX + k for k in own if k not in selected)
    unexpected = sorted(WEIGHTING_PREFIX + k for k in selected if k not in own)
    if missing or unexpected:
        raise ValueError(
            f"the weighting state does not fit {type(weighting).__name__}: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    for key, value in selected.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"the weighting state's {WEIGHTING_PREFIX + key} has shape {tuple(value.shape)}, "
                f"{type(weighting).__name__} expects {tuple(own[key].shape)}"
            )
    weighting.load_state_dict(selected, strict=True)
