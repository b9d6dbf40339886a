"""A client's side of a secure round, across the scopes it folds into; it lives where the client trains.

After local training the client does what the server would otherwise do with its update
(:mod:`mfed.secure.rounds` says what, in :class:`Instructions`): for each scope its update routes
into, it takes the routed tensors' change from the state it started from, times its weight over the
scope's largest, clips each coordinate to ``[-clip_range, clip_range]`` and appends the share of
coordinates that clipping moved, then quantises the vector into ``Z_{2^b}``
(:func:`mfed.secure.quantise.encode`). Only then does the protocol start: one
:class:`~mfed.secure.protocol.ClientScope` per scope, so each scope's masks cancel in that scope's
sum only. The update's tensors, the encoded vectors, the keys and the seeds stay in this object,
in the client's process (a Ray actor on its host); the driver gets the update's metadata and
masked vectors. A session answers each step once and is dropped after the last.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from mfed.aggregation.functional import merge_scopes
from mfed.secure.protocol import ClientScope
from mfed.secure.quantise import encode
from mfed.types import ClientUpdate, ServerState, State, shared_scopes_of

STEPS = ("advertise", "share", "mask", "unmask")

Route = tuple[tuple[str, str], ...]
"""A scope's vector layout: ``(key in the scope, key in the client's update)`` pairs, in vector order."""


@dataclass(frozen=True)
class Instructions:
    """What a client needs to encode its update for a secure round (all public).

    Attributes:
        round: The round.
        routes: Each scope the client folds into, and its layout.
        scale: Per scope, the client's weight over the largest weight among the scope's clients.
        summands: Per scope, the most vectors the sum may hold (the scope's sampled clients).
        bits: The ring's bit width.
        clip_range: The bound on each encoded coordinate.
        protected: Under differential privacy, the key prefixes it protects (floating tensors only).
        clip: Under differential privacy, the bound ``C`` on the protected change over every route, jointly.
        noise: Per scope, the std of the Gaussian noise the client adds to each protected coordinate
            (distributed DP noise; 0: none), drawn from the operating system's secure source.

    """

    round: int
    routes: Mapping[str, Route]
    scale: Mapping[str, float]
    summands: Mapping[str, int]
    bits: int
    clip_range: float
    protected: tuple[str, ...] = ()
    clip: float | None = None
    noise: Mapping[str, float] = field(default_factory=dict)

    def is_protected(self, key: str, value: torch.Tensor) -> bool:
        """Whether ``key`` is summed unweighted and clipped (differential privacy's), not weighted by examples."""
        return is_protected(key, value, self.protected, self.clip)


def is_protected(key: str, value: torch.Tensor, prefixes: tuple[str, ...], clip: float | None) -> bool:
    """Under DP (a ``clip``), whether ``key`` is a floating tensor of a protected part (``prefixes``)."""
    return clip is not None and value.is_floating_point() and key.startswith(prefixes)


def reference_of(state: ServerState, client_id: str, tasks: tuple[str, ...]) -> State:
    """What a client starts from (its shared scopes, merged): the base both sides take changes against."""
    return merge_scopes(state, shared_scopes_of(client_id, tasks))


def changes(update: State, reference: State, instructions: Instructions) -> dict[str, torch.Tensor]:
    """Each scope's vector before quantising.

    A scope's vector: its routed tensors' change from ``reference`` in layout order, the protected ones
    (under DP) scaled by ``min(1, C / norm)`` with the norm over every route jointly (so one client
    moves the released sums by at most ``C``, however many scopes a tensor routes into), the others
    times the client's weight over the scope's largest; each coordinate clipped to ``clip_range``;
    then the share of coordinates that clipping moved, and the within-the-bound bit (in the first
    scope only, so the bits sum to a count of clients).
    """
    i = instructions
    missing = sorted({k for route in i.routes.values() for _, k in route if k not in update or k not in reference})
    if missing:
        raise ValueError(f"the update or the state it started from lacks {missing[:3]}, which its route needs")
    delta = {
        k: (update[k].double() - reference[k].double()).reshape(-1) for route in i.routes.values() for _, k in route
    }
    if not all(torch.isfinite(d).all() for d in delta.values()):
        raise ValueError("the update has non-finite values; it is not sent")
    private = [(s, k) for s, route in i.routes.items() for _, k in route if i.is_protected(k, update[k])]
    norm = float(sum(delta[k].square().sum() for _, k in private)) ** 0.5
    shrink = min(1.0, i.clip / norm) if i.clip is not None and norm > 0 else 1.0
    out = {}
    secret = np.random.Generator(np.random.PCG64(secrets.randbits(128)))
    for n, (scope, route) in enumerate(sorted(i.routes.items())):
        std = i.noise.get(scope, 0.0)
        pieces = [
            delta[k] * shrink + torch.from_numpy(secret.standard_normal(delta[k].numel())) * std
            if i.is_protected(k, update[k])
            else delta[k] * i.scale[scope]
            for _, k in route
        ]
        change = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.float64)
        moved = (
            (change.abs() > i.clip_range).double().mean() if change.numel() else torch.zeros((), dtype=torch.float64)
        )
        within = float(n == 0 and i.clip is not None and norm <= i.clip)
        extra = torch.tensor([float(moved), within], dtype=torch.float64)
        out[scope] = torch.cat([change.clamp(-i.clip_range, i.clip_range), extra])
    return out


class Session:
    """One client's secure round: its encoded vectors and one protocol per scope.

    Args:
        update: Its update (kept here).
        state: The state it was sent (its scopes).
        instructions: What the server asked of it.

    Raises:
        ValueError: The update cannot be encoded as asked (a missing key, non-finite values).

    """

    def __init__(self, update: ClientUpdate, state: ServerState, instructions: Instructions) -> None:
        self.id, self.instructions = update.client_id, instructions
        i = instructions
        vectors = changes(update.state, reference_of(state, update.client_id, update.tasks), i)
        self._vectors = {s: encode(v, i.clip_range, i.bits, i.summands[s]) for s, v in vectors.items()}
        self._scopes: dict[str, ClientScope] = {}
        self.done = False

    def step(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Answer the server's step ``name`` with ``payload`` (per scope); the reply, per scope."""
        if name == "advertise":
            self._scopes = {s: ClientScope(self.id, a) for s, a in payload.items() if s in self._vectors}
            return {s: c.advertise() for s, c in self._scopes.items()}
        if name == "share":
            return {s: self._scopes[s].share_keys(keys) for s, keys in payload.items()}
        if name == "mask":
            return {s: self._scopes[s].masked_input(inbox, self._vectors[s]) for s, inbox in payload.items()}
        if name == "unmask":
            self.done = True
            return {s: self._scopes[s].unmask(*lists) for s, lists in payload.items()}
        raise ValueError(f"unknown secure aggregation step {name!r} (steps: {', '.join(STEPS)})")


class Sessions:
    """The secure sessions of the clients one process hosts (a Ray host, or the serial backend)."""

    def __init__(self) -> None:
        self._open: dict[str, Session] = {}

    def open(self, update: ClientUpdate, state: ServerState, instructions: Instructions) -> ClientUpdate:
        """Keep ``update`` in a new session; what the driver gets: the update without its tensors."""
        self._open[update.client_id] = Session(update, state, instructions)
        return replace(update, state={}, within_bound=None)  # the bit travels masked, inside the sum

    def step(self, client_id: str, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Client ``client_id``'s answer to step ``name``; its session is closed after the last step.

        Raises:
            KeyError: The client has no open session (its host was replaced since it trained).

        """
        session = self._open.get(client_id)
        if session is None:
            raise KeyError(f"client {client_id} holds no secure session (its host was replaced since it trained)")
        reply = session.step(name, payload)
        if session.done:
            del self._open[client_id]
        return reply
