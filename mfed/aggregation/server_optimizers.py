"""Server optimisers: the combined update of each scope taken as a pseudo-gradient (config group ``server_optimizer``).

A server step (:mod:`mfed.aggregation.stages`) for every averaging strategy: M-Fed, per-task
FedAvg, FedProx, FedRep, Ditto, cross-task FedAvg, ``mfed_ca`` (after its conflict-averse step).
Per scope and tensor, with ``x`` the state the round's clients were sent and ``Delta = aggregate - x``
the combined update (the negative of Flower's ``pseudo_gradient``):

* FedAvgM (Hsu, Qi and Brown 2019, "Measuring the effects of non-identical data distribution"):
  ``v <- beta v + Delta``, ``x <- x + eta v``. ``eta = 1, beta = 0`` is plain averaging.
* FedAdagrad, FedAdam, FedYogi (Reddi et al., ICLR 2021, "Adaptive Federated Optimization",
  Algorithm 2): ``m <- beta1 m + (1 - beta1) Delta``, then
  Adagrad ``v <- v + Delta^2``; Adam ``v <- beta2 v + (1 - beta2) Delta^2``;
  Yogi ``v <- v - (1 - beta2) Delta^2 sign(v - Delta^2)``; and ``x <- x + eta m / (sqrt(v) + tau)``.
  ``m`` starts at 0 and ``v`` at ``tau^2`` (the paper's ``v_{-1} >= tau^2``; Flower starts ``v`` at 0);
  no bias correction (as the paper; newer Flower versions add one to FedAdam).

The project's choices: the step moves trained parameters only; BatchNorm's running statistics
take the combined value and integer counters the combined count (a variance moved by Adam could
turn negative); a scope that did not fold this round keeps its value and its optimiser state;
arithmetic is float64, stored back in each tensor's dtype, and the moments are kept in float64
under the ``server_optimizer`` namespace of the server scope (checkpointed, never sent), so a
resumed run steps exactly as an uninterrupted one. Defaults: FedAvgM ``eta = 1, beta = 0.9``;
the adaptive ones ``eta = 0.01, beta1 = 0.9, beta2 = 0.99, tau = 1e-3`` (the paper tunes
``eta`` and ``tau`` per task; FedAdagrad's ``beta1`` defaults to 0, as Flower's).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from mfed.aggregation.contract import FOLDS, MEANS, Declaration
from mfed.aggregation.stages import RoundContext, ServerStep, floating_parameters
from mfed.types import ServerState

NAMESPACE = "server_optimizer"


def momentum_step(x: Tensor, delta: Tensor, v: Tensor, lr: float, momentum: float) -> tuple[Tensor, Tensor]:
    """FedAvgM: the next ``x`` and momentum buffer ``v`` (float64)."""
    v = momentum * v + delta
    return x + lr * v, v


def second_moment(rule: str, v: Tensor, delta: Tensor, beta2: float) -> Tensor:
    """The next second-moment estimate of ``adagrad``, ``adam`` or ``yogi`` (Reddi et al., Algorithm 2)."""
    square = delta * delta
    if rule == "adagrad":
        return v + square
    if rule == "adam":
        return beta2 * v + (1 - beta2) * square
    if rule == "yogi":
        return v - (1 - beta2) * square * torch.sign(v - square)
    raise ValueError(f"an adaptive server optimiser is adagrad, adam or yogi, got {rule!r}")


def adaptive_step(
    rule: str, x: Tensor, delta: Tensor, m: Tensor, v: Tensor, lr: float, betas: tuple[float, float], tau: float
) -> tuple[Tensor, Tensor, Tensor]:
    """FedAdagrad / FedAdam / FedYogi: the next ``x``, ``m`` and ``v`` (float64)."""
    m = betas[0] * m + (1 - betas[0]) * delta
    v = second_moment(rule, v, delta, betas[1])
    return x + lr * m / (v.sqrt() + tau), m, v


def _check(name: str, value: float, ok: bool, bound: str) -> float:
    if not ok:
        raise ValueError(f"server_optimizer.{name} must be {bound}, got {value}")
    return float(value)


class ServerOptimizer(ServerStep):
    """A server optimiser over each folded scope's combined update (see the module doc).

    Args:
        lr: The server learning rate ``eta`` (> 0).

    """

    namespace = NAMESPACE
    buffers: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = _check("lr", lr, lr > 0, "> 0")

    def declaration(self) -> Declaration:
        """Needs updates folded into scopes, and a mean per scope to take as the pseudo-gradient."""
        return Declaration(f"server_optimizer={self.name}", needs=frozenset({FOLDS, MEANS}))

    @property
    def name(self) -> str:
        """The config group's option."""
        return type(self).__name__.lower()

    @abstractmethod
    def move(self, x: Tensor, delta: Tensor, buffers: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The next ``x`` and buffers from the combined update ``delta`` (all float64)."""

    def initial(self, x: Tensor) -> list[Tensor]:
        """The buffers before the first step (zeros)."""
        return [torch.zeros_like(x) for _ in self.buffers]

    def step(self, ctx: RoundContext, aggregates: ServerState) -> ServerState:
        """Each folded scope's trained parameters moved from the state sent by the optimiser's rule."""
        kept, out = ctx.kept(self.namespace), {}
        for scope, aggregate in aggregates.items():
            sent, moved = ctx.state.get(scope, {}), dict(aggregate)
            for key in floating_parameters(aggregate):
                if key not in sent:
                    continue
                x = sent[key].to(torch.float64)
                names = [f"{b}/{scope}/{key}" for b in self.buffers]
                buffers = [kept[n] for n in names] if all(n in kept for n in names) else self.initial(x)
                new, buffers = self.move(x, aggregate[key].to(torch.float64) - x, buffers)
                moved[key] = new.to(sent[key].dtype)
                kept.update(zip(names, buffers, strict=True))
            out[scope] = moved
        ctx.keep(self.namespace, kept)
        return out


class Momentum(ServerOptimizer):
    """FedAvgM (Hsu et al. 2019): server momentum on the combined update.

    Args:
        lr: Server learning rate (1: the combined update's own size).
        momentum: ``beta`` in [0, 1).

    """

    buffers = ("v",)

    def __init__(self, lr: float = 1.0, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = _check("momentum", momentum, 0 <= momentum < 1, "in [0, 1)")

    def move(self, x: Tensor, delta: Tensor, buffers: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """One FedAvgM step."""
        new, v = momentum_step(x, delta, buffers[0], self.lr, self.momentum)
        return new, [v]


class _Adaptive(ServerOptimizer):
    buffers = ("m", "v")

    def __init__(self, lr: float, beta1: float, beta2: float, tau: float) -> None:
        super().__init__(lr)
        self.beta1 = _check("beta1", beta1, 0 <= beta1 < 1, "in [0, 1)")
        self.beta2 = _check("beta2", beta2, 0 <= beta2 < 1, "in [0, 1)")
        self.tau = _check("tau", tau, tau > 0, "> 0")

    def initial(self, x: Tensor) -> list[Tensor]:
        """``m = 0`` and ``v = tau^2``."""
        return [torch.zeros_like(x), torch.full_like(x, self.tau**2)]

    def move(self, x: Tensor, delta: Tensor, buffers: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """One step of the adaptive rule."""
        m, v = buffers
        new, m, v = adaptive_step(self.name, x, delta, m, v, self.lr, (self.beta1, self.beta2), self.tau)
        return new, [m, v]


class Adam(_Adaptive):
    """FedAdam (Reddi et al. 2021)."""

    def __init__(self, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> None:
        super().__init__(lr, beta1, beta2, tau)


class Yogi(_Adaptive):
    """FedYogi (Reddi et al. 2021)."""

    def __init__(self, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> None:
        super().__init__(lr, beta1, beta2, tau)


class Adagrad(_Adaptive):
    """FedAdagrad (Reddi et al. 2021); ``beta2`` is unused by its rule."""

    def __init__(self, lr: float = 0.01, beta1: float = 0.0, tau: float = 1e-3) -> None:
        super().__init__(lr, beta1, 0.0, tau)


def no_server_optimizer() -> None:
    """No server optimiser (``server_optimizer=none``, the default): the combined state is the next state."""
    return None
