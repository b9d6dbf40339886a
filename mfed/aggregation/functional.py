"""Pure aggregation functions over flat states. No strategy logic, no I/O.

Floating-point tensors are averaged in float64 and cast back. Integer tensors (BatchNorm's
``num_batches_tracked`` and other counters) cannot hold a fraction: they get the weighted mean
rounded to the nearest integer, in their own dtype, so that a counter stays a plausible count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from mfed.models.multitask import ENCODER_PREFIX, decoder_prefix
from mfed.types import ClientUpdate, ServerState, State, global_scope, personal_scope, task_scope

PERSONAL = personal_scope("")  # the prefix of every personal scope

WEIGHTINGS = ("examples", "uniform")


def select(state: Mapping[str, Tensor], prefixes: Iterable[str]) -> State:
    """Return the entries of ``state`` whose key starts with any of ``prefixes``."""
    prefixes = tuple(prefixes)
    return {k: v for k, v in state.items() if k.startswith(prefixes)}


def encoder_and_decoders(state: Mapping[str, Tensor], tasks: Iterable[str]) -> ServerState:
    """``state`` as scopes: the encoder under ``global``, each task's decoder under ``task:<task>``."""
    scopes: ServerState = {global_scope(): select(state, [ENCODER_PREFIX])}
    scopes.update({task_scope(t): select(state, [decoder_prefix(t)]) for t in tasks})
    return scopes


def merge_scopes(state: Mapping[str, Mapping[str, Tensor]], scopes: Iterable[str]) -> State:
    """The tensors of ``scopes`` (those present in ``state``) as one state, a key held by several averaged.

    A client loads its scopes this way. Where scopes share no key (the usual case) it is their
    union. A key in several of them, e.g. the encoder in each task's scope of per-task FedAvg for
    a client holding two tasks, starts from the unweighted mean of those copies (rounded in an
    integer dtype, as in :class:`RunningMean`). A ``personal:<id>`` scope is the server's model for
    that client alone: its keys replace the others' copies.
    """
    scopes = list(scopes)
    personal = [s for s in scopes if s.startswith(PERSONAL)]
    merged: State = {}
    copies: dict[str, list[Tensor]] = {}
    for scope in (s for s in scopes if not s.startswith(PERSONAL)):
        for key, value in state.get(scope, {}).items():
            if key in merged:
                copies.setdefault(key, [merged[key]]).append(value)
            merged[key] = value
    for key, values in copies.items():
        merged[key] = weighted_average([{key: v} for v in values], [1.0] * len(values))[key]
    for scope in personal:
        merged.update(state.get(scope, {}))
    return merged


def check_layout(state: Mapping[str, Tensor], name: str, reference: Mapping[str, Tensor], reference_name: str) -> None:
    """Raise ``ValueError`` naming ``name`` when its keys or shapes differ from ``reference``'s."""
    if set(state) != set(reference):
        missing, extra = sorted(set(reference) - set(state)), sorted(set(state) - set(reference))
        raise ValueError(
            f"state of {name} has different keys than {reference_name}: missing {missing[:5]}, "
            f"extra {extra[:5]} (do all clients build the same encoder/decoder?)"
        )
    for key, value in state.items():
        if value.shape != reference[key].shape:
            raise ValueError(
                f"{key} has shape {tuple(value.shape)} in {name} but {tuple(reference[key].shape)} "
                f"in {reference_name}: clients' model configs differ"
            )


def check_same_model(state: Mapping[str, Mapping[str, Tensor]], reference: Mapping[str, Mapping[str, Tensor]]) -> None:
    """Raise ``ValueError`` naming the part whose keys or shapes in ``state`` differ from ``reference``'s scope.

    A resumed checkpoint's shared scopes must hold this run's encoder and decoders: a task's
    decoder of another architecture (``tasks.<task>.decoder`` or ``model`` changed) is refused here,
    before any client starts.
    """
    for scope, expected in reference.items():
        found = state.get(scope)
        if found is None:
            continue
        if {k: tuple(v.shape) for k, v in found.items()} != {k: tuple(v.shape) for k, v in expected.items()}:
            what = f"decoder of task {scope.removeprefix('task:')!r}" if scope.startswith("task:") else f"{scope} scope"
            raise ValueError(
                f"resume: the checkpoint's {what} has other parameters than this run builds: model.* or "
                "tasks.<task>.decoder differ from the run's; leave them off, or start a new run"
            )


def check_same_layout(states: Sequence[Mapping[str, Tensor]], names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the state whose keys or shapes differ from the first's."""
    for name, state in zip(names[1:], states[1:], strict=True):
        check_layout(state, name, states[0], names[0])


class RunningMean:
    """A weighted mean of states with identical keys and shapes, accumulated one state at a time.

    Sums are float64; :meth:`value` casts back as described in the module doc. Memory is one
    state, however many are added: the driver folds each client's update in as it arrives.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.dtypes: dict[str, torch.dtype] = {}
        self.total = 0.0
        self.first = ""

    def add(self, state: Mapping[str, Tensor], weight: float, name: str = "a state") -> None:
        """Fold ``state`` in with ``weight`` (>= 0).

        Raises:
            ValueError: The weight is negative, or ``state``'s keys or shapes differ from the
                first state's (naming both).

        """
        if weight < 0:
            raise ValueError(f"weights must be >= 0, got {weight} for {name}")
        if not self.sums:
            self.first, self.dtypes = name, {k: v.dtype for k, v in state.items()}
            self.sums = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in state.items()}
        check_layout(state, name, self.sums, self.first)
        for key, value in state.items():
            self.sums[key].add_(value.to(torch.float64), alpha=weight)
        self.total += weight

    def value(self) -> State:
        """The weighted mean of every state added so far."""
        if not self.sums:
            raise ValueError("cannot average zero states")
        if self.total <= 0:
            raise ValueError("weights must be >= 0 with a positive sum, got a sum of 0")
        out: State = {}
        for key, total in self.sums.items():
            mean, dtype = total / self.total, self.dtypes[key]
            out[key] = mean.to(dtype) if dtype.is_floating_point or dtype.is_complex else torch.round(mean).to(dtype)
        return out


def weighted_average(
    states: Sequence[Mapping[str, Tensor]], weights: Sequence[float], names: Sequence[str] | None = None
) -> State:
    """Average states key by key with the given weights (a :class:`RunningMean` over them, in order).

    Args:
        states: States with identical keys and shapes.
        weights: One non-negative weight per state, with a positive sum.
        names: Names of the states for error messages (e.g. client ids).

    Returns:
        The averaged state; each tensor keeps its dtype (integers are rounded, see module doc).

    """
    if len(states) != len(weights):
        raise ValueError(f"got {len(states)} states but {len(weights)} weights")
    names = list(names) if names is not None else [f"state {i}" for i in range(len(states))]
    mean = RunningMean()
    for state, weight, name in zip(states, weights, names, strict=True):
        mean.add(state, float(weight), name)
    return mean.value()


def update_weight(update: ClientUpdate, weighting: str) -> float:
    """Aggregation weight of ``update``: its number of examples, or 1 (uniform)."""
    if weighting == "examples":
        return float(update.num_examples)
    if weighting == "uniform":
        return 1.0
    raise ValueError(f"aggregation.weighting must be one of {WEIGHTINGS}, got {weighting!r}")
