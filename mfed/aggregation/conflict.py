"""Conflict-averse combination of update vectors (CAGrad, Liu et al., NeurIPS 2021), pure functions.

Given update vectors g_1..g_N (states: dicts of tensors, flattened in thought) with mean
g_0 = (1/N) sum_i g_i, CAGrad looks for the direction d within a ball around g_0 that maximises
the smallest improvement over the inputs: max_d min_i <g_i, d> subject to ||d - g_0|| <= c ||g_0||.
Its dual is a problem over the simplex,

    w* = argmin_{w in simplex} <g_w, g_0> + c ||g_0|| ||g_w||,     g_w = sum_i w_i g_i,

and the solution is d = g_0 + (c ||g_0|| / ||g_w*||) g_w*, rescaled by 1 / (1 + c^2) (CAGrad's
default ``rescale=1``, which FedHCA2's encoder aggregation keeps). CAGrad's code adds 1e-8 inside
its norms as a guard; here the Gram matrix is scaled instead, so small updates are solved as
exactly as large ones. Every quantity is a linear
combination of the inputs, so the solve needs only their Gram matrix (N x N inner products) and
returns the combination's coefficients: d = sum_i a_i g_i. The inputs are never flattened or
stacked, and the result is exact in float64 up to the solver's tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy import optimize
from torch import Tensor

NEGLIGIBLE = 1e-6
"""A norm below this, relative to the largest input's (the Gram matrix scaled to a largest entry of 1), is rounding:
its square is within what summing a Gram entry over many coordinates loses (about 1e-12 of the largest)."""


def gram(states: Sequence[Mapping[str, Tensor]]) -> np.ndarray:
    """The N x N matrix of inner products <g_i, g_j> of states with the same keys, in float64."""
    n = len(states)
    out = np.zeros((n, n))
    for key in states[0]:
        stacked = torch.stack([s[key].reshape(-1).to(torch.float64) for s in states])
        out += (stacked @ stacked.T).numpy()
    return out


def _scaled(gram_matrix: np.ndarray) -> np.ndarray | None:
    """The Gram matrix over its largest entry (the solution does not depend on the scale); None if all zero."""
    scale = float(np.abs(gram_matrix).max()) if gram_matrix.size else 0.0
    return gram_matrix / scale if scale > 0 else None


def cagrad_weights(gram_matrix: np.ndarray, c: float) -> np.ndarray:
    """``w*`` of the dual problem over the simplex (the module doc), from the inputs' Gram matrix.

    Solved by SLSQP from the uniform weights with the objective's exact gradient, on the Gram
    matrix scaled to a largest entry of 1 (small updates would otherwise meet the solver's
    tolerances). With one input, or inputs that are all zero, the weights are uniform.
    """
    n = gram_matrix.shape[0]
    start = np.full(n, 1.0 / n)
    a = _scaled(gram_matrix)
    if n == 1 or a is None:
        return start
    ab, k = a @ start, c * np.sqrt(max(float(a.mean()), 0.0))

    def norm(w: np.ndarray) -> float:
        return float(np.sqrt(max(float(w @ a @ w), 0.0) + 1e-30))

    result = optimize.minimize(
        lambda w: float(w @ ab) + k * norm(w), start, jac=lambda w: ab + k * (a @ w) / norm(w), method="SLSQP",
        bounds=[(0.0, 1.0)] * n, options={"ftol": 1e-15, "maxiter": 1000},
        constraints={"type": "eq", "fun": lambda w: 1.0 - w.sum(), "jac": lambda w: -np.ones_like(w)},
    )  # fmt: skip
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum()


def cagrad_coefficients(gram_matrix: np.ndarray, c: float, rescale: bool = True) -> np.ndarray:
    """The coefficients ``a`` of CAGrad's direction ``d = sum_i a_i g_i`` (the module doc).

    Args:
        gram_matrix: The inputs' inner products (:func:`gram`).
        c: The ball's radius relative to ``||g_0||`` (>= 0; 0 gives the mean).
        rescale: Divide by ``1 + c^2`` (CAGrad's ``rescale=1``).

    """
    if c < 0:
        raise ValueError(f"the conflict-averse radius c must be >= 0, got {c}")
    n = gram_matrix.shape[0]
    coefficients = np.full(n, 1.0 / n)
    a = _scaled(gram_matrix)
    if a is not None:
        weights = cagrad_weights(gram_matrix, c)
        gw_norm, g0_norm = np.sqrt(max(float(weights @ a @ weights), 0.0)), np.sqrt(max(float(a.mean()), 0.0))
        # The ratio c ||g_0|| / ||g_w|| does not depend on the scale, but where g_w (or g_0) is rounding
        # noise against the largest input (norm about 1 here), so is its direction: keep the mean then.
        if gw_norm > NEGLIGIBLE and g0_norm > NEGLIGIBLE:
            coefficients = coefficients + (c * g0_norm / gw_norm) * weights
    return coefficients / (1 + c**2) if rescale else coefficients


def combine(states: Sequence[Mapping[str, Tensor]], coefficients: Sequence[float] | np.ndarray) -> dict[str, Tensor]:
    """``sum_i coefficients[i] * states[i]`` key by key, in float64."""
    out: dict[str, Tensor] = {}
    for key in states[0]:
        out[key] = sum(
            (float(a) * s[key].to(torch.float64) for a, s in zip(coefficients, states, strict=True)),
            torch.zeros(states[0][key].shape, dtype=torch.float64),
        )
    return out
