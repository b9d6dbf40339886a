"""Screening client updates before aggregation: a bad update is rejected, never averaged.

An update is checked against what its client was asked for and what the driver knows of it: the
client id that was sampled, the client's tasks, an example count equal to its shard's size (a
client cannot buy weight), finite numbers as training metrics, exactly the keys, shapes and
dtypes the strategy's uploads select from the model, finite values, BatchNorm statistics within
their domain (variances non-negative, batch counters not going down from what it was sent), and
an update norm within ``defences.norm_ratio`` times the median of the previous round's accepted
updates of its kind and part, or, before any, times the norm of the part it was sent (finite
poison, e.g. a sign flip scaled by 1e30). Each rejection is
a :class:`Fault` that the driver reports (console, history.json, W&B ``fault/...``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mfed.aggregation.functional import merge_scopes
from mfed.aggregation.robust import update_norm
from mfed.models.multitask import DECODERS_PREFIX, ENCODER_PREFIX, part_prefixes
from mfed.systems.weighting import WEIGHTING_PREFIX, WeightingFactory, weighting_state
from mfed.types import PARTS, ClientSpec, ClientUpdate, LocalStep, State, shared_scopes_of

Layout = dict[str, tuple[tuple[int, ...], torch.dtype]]
"""Expected ``{key: (shape, dtype)}`` of one client's update."""


@dataclass(frozen=True)
class Fault:
    """One thing that went wrong with one client in one round.

    Attributes:
        round: The round.
        client_id: The client.
        kind: ``rejected`` (its update failed a check), ``nonfinite`` (its evaluation reported a
            non-finite metric), ``failed`` (its actor died past its
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


class ExpectedLayouts:
    """What a client must send and keep after its round's steps (cached by kind and parts).

    Args:
        model_state: The full model's state (every task's decoder).
        weighting: Builds a client's loss weighting, whose parameters it keeps; ``None``: equal weights.

    """

    def __init__(self, model_state: Mapping[str, Tensor], weighting: WeightingFactory | None) -> None:
        self.model_state, self.weighting = model_state, weighting
        self._cache: dict[tuple[tuple[str, ...], ...], tuple[Layout, Layout]] = {}

    def of(self, spec: ClientSpec, steps: Sequence[LocalStep]) -> tuple[Layout, Layout]:
        """The keys, shapes and dtypes ``spec``'s client sends and keeps after ``steps``."""
        sends = tuple(p for p in PARTS if any(p in s.sends for s in steps))
        keeps = tuple(p for p in PARTS if any(p in s.keeps for s in steps))
        key = (spec.tasks, sends, keeps)
        if key not in self._cache:
            private = expected_layout(self.model_state, part_prefixes(keeps, spec.tasks))
            if self.weighting is not None:  # the weighting's own parameters are kept too
                private.update(expected_layout(weighting_state(self.weighting(list(spec.tasks))), [WEIGHTING_PREFIX]))
            self._cache[key] = (expected_layout(self.model_state, part_prefixes(sends, spec.tasks)), private)
        return self._cache[key]


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


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _domain_problem(state: State, sent: Mapping[str, Tensor]) -> str | None:
    """BatchNorm statistics outside their domain: a negative variance, a batch counter that went down."""
    for key, value in state.items():
        if key.endswith("running_var") and bool((value < 0).any()):
            return f"{int((value < 0).sum())} negative values in {key} (a variance)"
        if key.endswith("num_batches_tracked") and key in sent and bool((value < sent[key]).any()):
            return f"{key} went down from {int(sent[key])} to {int(value)}"
    return None


def check_update(
    update: ClientUpdate,
    spec: ClientSpec,
    layout: Layout,
    private: Layout | None = None,
    sent: Mapping[str, Tensor] | None = None,
) -> str | None:
    """Why ``update`` must not be aggregated, or ``None`` when it passes every check.

    Args:
        update: What the client sent.
        spec: The client that was asked (id, tasks and shard).
        layout: What it was asked to send (see :func:`expected_layout`).
        private: What it was asked to keep (its ``private`` state); ``None``: nothing.
        sent: What it was sent (its batch counters may only grow from there); ``None``: unknown.

    """
    if update.client_id != spec.client_id:
        return f"claims to be client {update.client_id!r}"
    if update.tasks != spec.tasks:
        return f"claims tasks {list(update.tasks)} but the client holds {list(spec.tasks)}"
    n = update.num_examples
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        return f"example count {n!r} is not a positive integer"
    if n != len(spec.train_indices):
        return f"claims {n} examples but its shard holds {len(spec.train_indices)}"
    odd = {k: v for k, v in update.metrics.items() if not _number(v) or not math.isfinite(v)}
    if odd:
        return "non-finite or non-numeric training " + ", ".join(f"{k} {v!r}" for k, v in odd.items())
    for what, state, expected in (("", update.state, layout), ("private state: ", update.private, private or {})):
        problem = _layout_problem(state, expected) or _nonfinite_problem(state) or _domain_problem(state, sent or {})
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
        state: The server state the clients were sent.
        medians: The previous round's median update norm of each accepted ``kind/part``
            (``semseg+depth/encoder``); an update more than ``norm_ratio`` times longer is rejected.
            Without one (round 1, a new kind), the bound is ``norm_ratio`` times the part's own norm.
        norm_ratio: That multiple; ``None``: no bound.
        private: Under differential privacy: the bound is always ``norm_ratio`` times the part's
            own norm (the state sent, public), never other clients' norms, and a rejection's
            reason names no norm, so the screen releases nothing of the others' updates.

    Attributes:
        norms: Each accepted update's norm, by ``kind/part``: the next round's medians (:meth:`medians`).

    """

    def __init__(
        self,
        specs: Mapping[str, ClientSpec],
        layouts: Mapping[str, tuple[Layout, Layout]],
        round_idx: int,
        state: Mapping[str, State] | None = None,
        medians: Mapping[str, float] | None = None,
        norm_ratio: float | None = None,
        private: bool = False,
    ) -> None:
        self.specs, self.layouts, self.round, self.private = specs, layouts, round_idx, private
        medians = {} if private else medians
        self.state, self.bounds = state or {}, {k: m * norm_ratio for k, m in (medians or {}).items() if norm_ratio}
        self.ratio, self.previous = norm_ratio, dict(medians or {})
        self.seen: set[str] = set()
        self.norms: dict[str, list[float]] = {}

    def __call__(self, update: ClientUpdate) -> Fault | None:
        """``None`` when ``update`` may be aggregated, else why not."""
        spec = self.specs.get(update.client_id)
        if spec is None:
            reason: str | None = "was not sampled this round"
        elif update.client_id in self.seen:
            reason = "sent a second update this round"
        else:
            sent = merge_scopes(self.state, shared_scopes_of(spec.client_id, spec.tasks))
            reason = check_update(update, spec, *self.layouts[spec.client_id], sent=sent) or self._too_long(
                update, spec, sent
            )
        self.seen.add(update.client_id)
        return None if reason is None else Fault(self.round, str(update.client_id), "rejected", reason)

    def _too_long(self, update: ClientUpdate, spec: ClientSpec, sent: Mapping[str, Tensor]) -> str | None:
        """An update of a part longer than its bound; else its norms join the round's record."""
        norms = {}
        for part, prefix in (("encoder", ENCODER_PREFIX), ("decoder", DECODERS_PREFIX)):
            moved = {k: v for k, v in update.state.items() if k.startswith(prefix) and k in sent}
            if moved:
                floats = [sent[k] for k in moved if sent[k].is_floating_point()]
                size = math.sqrt(sum(float(t.double().square().sum()) for t in floats))  # the part's own norm
                norms[f"{spec.kind}/{part}"] = (update_norm(moved, sent), size)
        for key, (norm, size) in norms.items():
            if self.ratio is None:
                break
            if key in self.bounds and norm > self.bounds[key]:
                return (
                    f"its {key.rsplit('/', 1)[1]} update's norm {norm:.3g} is over {self.ratio:g} x the median "
                    f"{self.previous[key]:.3g} of the previous round's accepted updates of its kind "
                    "(defences.norm_ratio)"
                )
            if key not in self.bounds and norm > self.ratio * size:  # no earlier round (or DP): the part's own size
                part = key.rsplit("/", 1)[1]
                if self.private:
                    return f"its {part} update exceeds {self.ratio:g} x the {part} sent, in norm (defences.norm_ratio)"
                return (
                    f"its {part} update's norm {norm:.3g} is over {self.ratio:g} x the norm {size:.3g} of the {part} "
                    "it was sent (defences.norm_ratio)"
                )
        for key, (norm, _) in norms.items():
            self.norms.setdefault(key, []).append(norm)
        return None

    def medians(self) -> dict[str, float]:
        """The median norm of the round's accepted updates of each ``kind/part`` (the previous ones where none came)."""
        return {**self.previous, **{k: float(statistics.median(v)) for k, v in self.norms.items()}}


def nonfinite_scopes(state: Mapping[str, State]) -> list[str]:
    """Scopes of a server state that hold a non-finite value (a state never to be kept)."""
    return [scope for scope, tensors in state.items() if _nonfinite_problem(tensors) is not None]
