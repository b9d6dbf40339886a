"""Screening client updates before aggregation: a bad update is rejected, never averaged.

An update is checked against what its client was asked for: the client id that was sampled,
the client's tasks, a positive whole example count, exactly the keys, shapes and dtypes the
strategy's uploads select from the model, finite values and finite training losses. Each
rejection is a :class:`Fault` that the driver reports (console, history.json, W&B ``fault/...``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mfed.types import ClientSpec, ClientUpdate, State

Layout = dict[str, tuple[tuple[int, ...], torch.dtype]]
"""Expected ``{key: (shape, dtype)}`` of one client's update."""


@dataclass(frozen=True)
class Fault:
    """One thing that went wrong with one client in one round.

    Attributes:
        round: The round.
        client_id: The client.
        kind: ``rejected`` (its update failed a check), ``failed`` (its actor died past its
            retries, or its code raised), ``timeout`` (late; its result was dropped) or
            ``restarted`` (its actor died and was replaced; the call was retried).
        reason: What was wrong, in words.

    """

    round: int
    client_id: str
    kind: str
    reason: str


def expected_layout(model_state: Mapping[str, Tensor], prefixes: Sequence[str]) -> Layout:
    """Keys, shapes and dtypes a client must upload: the ``prefixes`` part of the model."""
    prefixes = tuple(prefixes)
    return {k: (tuple(v.shape), v.dtype) for k, v in model_state.items() if prefixes and k.startswith(prefixes)}


def _listed(keys: Sequence[str]) -> str:
    head = ", ".join(sorted(keys)[:3])
    return head + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _layout_problem(state: State, layout: Layout) -> str | None:
    missing, extra = sorted(set(layout) - set(state)), sorted(set(state) - set(layout))
    if missing or extra:
        parts = [f"missing {_listed(missing)}" if missing else "", f"unexpected {_listed(extra)}" if extra else ""]
        return "keys differ from what it was sent: " + "; ".join(p for p in parts if p)
    for key, (shape, dtype) in layout.items():
        value = state[key]
        if not isinstance(value, Tensor):
            return f"{key} is a {type(value).__name__}, not a tensor"
        if tuple(value.shape) != shape or value.dtype != dtype:
            return f"{key} is {tuple(value.shape)} {value.dtype}, expected {shape} {dtype}"
    return None


def _nonfinite_problem(state: State) -> str | None:
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in state.items() if v.is_floating_point()}
    bad = {k: n for k, n in bad.items() if n}
    if not bad:
        return None
    return f"{sum(bad.values())} non-finite values in {_listed(list(bad))}"


def check_update(update: ClientUpdate, spec: ClientSpec, layout: Layout, private: Layout | None = None) -> str | None:
    """Why ``update`` must not be aggregated, or ``None`` when it passes every check.

    Args:
        update: What the client sent.
        spec: The client that was asked (id and tasks).
        layout: What it was asked to send (see :func:`expected_layout`).
        private: What it was asked to keep (its ``private`` state); ``None``: nothing.

    """
    if update.client_id != spec.client_id:
        return f"claims to be client {update.client_id!r}"
    if update.tasks != spec.tasks:
        return f"claims tasks {list(update.tasks)} but the client holds {list(spec.tasks)}"
    n = update.num_examples
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        return f"example count {n!r} is not a positive integer"
    losses = {k: v for k, v in update.metrics.items() if not math.isfinite(float(v))}
    if losses:
        return "non-finite training " + ", ".join(f"{k} {v}" for k, v in losses.items())
    for what, state, expected in (("", update.state, layout), ("private state: ", update.private, private or {})):
        problem = _layout_problem(state, expected) or _nonfinite_problem(state)
        if problem:
            return what + problem
    return None


class Screen:
    """One round's screening: call it on each update as it arrives; a rejection comes back as a fault.

    Args:
        specs: The round's sampled clients by id; an update from any other client, or a second
            update from the same client, is rejected.
        layouts: Per sampled client, what it was asked to send and keep (see :func:`expected_layout`).
        round_idx: The round, for the faults.

    """

    def __init__(
        self, specs: Mapping[str, ClientSpec], layouts: Mapping[str, tuple[Layout, Layout]], round_idx: int
    ) -> None:
        self.specs, self.layouts, self.round = specs, layouts, round_idx
        self.seen: set[str] = set()

    def __call__(self, update: ClientUpdate) -> Fault | None:
        """``None`` when ``update`` may be aggregated, else why not."""
        spec = self.specs.get(update.client_id)
        if spec is None:
            reason: str | None = "was not sampled this round"
        elif update.client_id in self.seen:
            reason = "sent a second update this round"
        else:
            reason = check_update(update, spec, *self.layouts[spec.client_id])
        self.seen.add(update.client_id)
        return None if reason is None else Fault(self.round, str(update.client_id), "rejected", reason)


def nonfinite_scopes(state: Mapping[str, State]) -> list[str]:
    """Scopes of a server state that hold a non-finite value (a state never to be kept)."""
    return [scope for scope, tensors in state.items() if _nonfinite_problem(tensors) is not None]
