"""The M-Fed local regulariser: pull the local decoder toward its task's global decoder.

``R = mu/2 * sum_p ||phi_p - phi_g,p||^2`` over the decoder's parameters, so that
``dR/dphi = mu * (phi - phi_g)``. The gradient flows through ``phi`` (the global copy is a
constant): unlike FMTL-Bench's FedProx term, which is built from ``param.data`` and so adds no
gradient. Applying it to the decoder only is the project's choice (the paper's body is not
available; its summary says the local loss adds "local decoder and global decoder information").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn


def proximal_term(
    named_params: Iterable[tuple[str, nn.Parameter]], reference: Mapping[str, Tensor], mu: float
) -> Tensor:
    """Return ``mu/2 * sum ||p - reference[name]||^2`` over ``named_params``.

    Args:
        named_params: ``(name, parameter)`` pairs, e.g. ``decoder.named_parameters()``.
        reference: Constant tensors by the same names (the global decoder).
        mu: Strength, >= 0.

    Raises:
        KeyError: A parameter has no reference tensor.

    """
    if mu < 0:
        raise ValueError(f"mu must be >= 0, got {mu}")
    terms = []
    for name, param in named_params:
        if name not in reference:
            raise KeyError(f"no global reference for decoder parameter {name!r}")
        terms.append((param - reference[name].detach().to(param.device)).pow(2).sum())
    total = torch.stack(terms).sum() if terms else torch.zeros(())
    return 0.5 * mu * total
