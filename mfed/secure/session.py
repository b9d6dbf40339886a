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

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

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

    """

    round: int
    routes: Mapping[str, Route]
    scale: Mapping[str, float]
    summands: Mapping[str, int]
    bits: int
    clip_range: float


def reference_of(state: ServerState, client_id: str, tasks: tuple[str, ...]) -> State:
    """What a client starts from (its shared scopes, merged): the base both sides take changes against."""
    return merge_scopes(state, shared_scopes_of(client_id, tasks))


def encode_scope(update: State, reference: State, route: Route, scale: float, clip_range: float) -> torch.Tensor:
    """A scope's vector before quantising: the scaled, clipped change of the routed tensors, then the clipped share."""
    missing = [k for _, k in route if k not in update or k not in reference]
    if missing:
        raise ValueError(f"the update or the state it started from lacks {missing[:3]}, which its route needs")
    change = torch.cat([(update[k].double() - reference[k].double()).reshape(-1) for _, k in route]) * scale
    if not torch.isfinite(change).all():
        raise ValueError("the update has non-finite values; it is not sent")
    clipped = (change.abs() > clip_range).double().mean() if change.numel() else torch.zeros((), dtype=torch.float64)
    return torch.cat([change.clamp(-clip_range, clip_range), clipped.reshape(1)])


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
        reference = reference_of(state, update.client_id, update.tasks)
        i = instructions
        self._vectors = {
            scope: encode(
                encode_scope(update.state, reference, route, i.scale[scope], i.clip_range),
                i.clip_range, i.bits, i.summands[scope],
            )
            for scope, route in i.routes.items()
        }  # fmt: skip
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
        return replace(update, state={})

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
