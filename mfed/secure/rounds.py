"""Secure aggregation as the driver runs it: the config group, and one round's server side over every scope.

``secure_aggregation=secagg_plus`` (:class:`SecureAggregation`) makes the server learn each
scope's weighted mean and nothing else. A round (:class:`SecureRound`):

1. **Before training** the driver routes each sampled client's update *layout* (its keys, no
   values) with the strategy's own route, so every strategy's scopes work unchanged (M-Fed's
   encoder and decoders, per-task FedAvg's encoder once per task, cross-task FedAvg's soups,
   ``mfed_ca``'s task means). Each client gets its :class:`~mfed.secure.session.Instructions`
   with its training call: per scope, the layout, its weight over the scope's largest, and the
   encoding (bits, ``clip_range``, the scope's sampled clients as the most summands).
2. **Each client** trains and encodes its routed change from the state it started from
   (:mod:`mfed.secure.session`), keeping it; the driver receives its metadata only.
3. **Per scope**, the clients that trained run SecAgg+ (:mod:`mfed.secure.protocol`): the four
   steps go out as one call per client per step, carrying all its scopes. A client that stops
   answering is a dropout of every scope it is in.
4. The driver decodes each scope's sum of the survivors' scaled changes, undoes the scaling
   (the largest weight over the survivors' total weight, both public) and adds the survivors'
   weighted mean starting point: the weighted mean the plain fold computes, within the
   quantisation bound (:func:`error_bound`).

A scope with one client left in a round is not summed (its sum would be that client's update):
it keeps its state, and the round goes on. Too many dropouts to recover a secret end the round
with :class:`~mfed.secure.protocol.Aborted`: the driver retries or fails it, never folds a wrong
or revealing sum.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mfed.aggregation.base import Strategy
from mfed.aggregation.contract import UPDATES, Declaration
from mfed.aggregation.functional import select, update_weight
from mfed.aggregation.privacy import PART_PREFIXES, DifferentialPrivacy
from mfed.models.multitask import part_prefixes
from mfed.secure.graph import default_degree, default_threshold
from mfed.secure.masks import MAX_BITS
from mfed.secure.protocol import Aborted, Alone, ServerScope, wire_bytes
from mfed.secure.quantise import decode, scale
from mfed.secure.session import STEPS, Instructions, Route, is_protected, reference_of
from mfed.types import ClientSpec, ClientUpdate, LocalStep, ServerState, State

Exchange = Callable[[str, Mapping[str, Mapping[str, Any]]], Mapping[str, Mapping[str, Any]]]
"""``exchange(step, payloads)``: each client's reply to its payload (per scope); one that did not answer is absent."""


@dataclass
class SecureAggregation:
    """SecAgg+ per aggregation scope (config group ``secure_aggregation``).

    Args:
        neighbours: Neighbours per client in each scope: ``auto`` (:func:`mfed.secure.graph.default_degree`),
            ``all`` (SecAgg: every other client of the scope) or an even number.
        threshold: Shares that recover a client's secret: ``auto`` (a majority of its holders) or a number.
        bits: The ring's bit width ``b`` (each masked value travels in ``ceil(b / 8)`` bytes).
        clip_range: The bound on each coordinate of a client's weighted change; a change beyond it
            is clipped (the share clipped is logged as ``agg/secure_clipped``).
        dp_noise: With ``privacy=dp``: ``central`` (the driver noises the unmasked sums) or
            ``distributed`` (each client adds its share of the noise before masking, enough that the
            ``t`` inputs every unmasked sum holds at least carry the whole noise: the driver never
            sees an un-noised sum, as long as ``t`` clients of each sum are honest).

    """

    neighbours: int | str = "auto"
    threshold: int | str = "auto"
    bits: int = 48
    clip_range: float = 64.0
    dp_noise: str = "central"

    def __post_init__(self) -> None:
        if self.neighbours not in ("auto", "all") and not (isinstance(self.neighbours, int) and self.neighbours >= 1):
            raise ValueError(
                f"secure_aggregation.neighbours must be auto, all or an even number >= 2, got {self.neighbours!r}"
            )
        if self.threshold != "auto" and not (isinstance(self.threshold, int) and self.threshold >= 2):
            raise ValueError(f"secure_aggregation.threshold must be auto or an int >= 2, got {self.threshold!r}")
        if not isinstance(self.bits, int) or not 8 <= self.bits <= MAX_BITS:
            raise ValueError(f"secure_aggregation.bits must be an int in 8..{MAX_BITS}, got {self.bits!r}")
        if not self.clip_range >= 1:  # the counters each vector carries (a share, a bit) lie in [0, 1]
            raise ValueError(f"secure_aggregation.clip_range must be >= 1, got {self.clip_range!r}")
        if self.dp_noise not in ("central", "distributed"):
            raise ValueError(f"secure_aggregation.dp_noise must be central or distributed, got {self.dp_noise!r}")

    def check_privacy(self, privacy: DifferentialPrivacy | None) -> None:
        """Refuse distributed noise without DP, or with adaptive clipping (whose count the driver would noise)."""
        if self.dp_noise == "distributed" and privacy is None:
            raise ValueError("secure_aggregation.dp_noise=distributed needs privacy=dp (the noise to distribute)")
        if self.dp_noise == "distributed" and privacy is not None and privacy.adaptive:
            raise ValueError(
                "secure_aggregation.dp_noise=distributed cannot go with privacy.adaptive=true: the count of clients "
                "within the bound would be released without its noise; set privacy.adaptive=false or dp_noise=central"
            )

    def declaration(self) -> Declaration:
        """Releases each scope's sum only: no stage may see an update on its own (DP clips on the client)."""
        return Declaration("secure_aggregation=secagg_plus", voids={UPDATES: "releases only each scope's sum"})

    def check_members(self, members: Mapping[str, Mapping[str, int]], fraction: float) -> list[str]:
        """Refuse a federation where a scope never holds 2 clients (its sum would be its update); warn where rarely.

        Args:
            members: Per scope, its clients of each kind (:meth:`~mfed.aggregation.base.Strategy.members`).
            fraction: The share of clients sampled each round.

        Returns:
            One line per scope that expects fewer than 2 clients a round (it is skipped in a round that samples one).

        Raises:
            ValueError: A scope with fewer than 2 clients in the federation, naming it and the fix.

        """
        lines = []
        for scope, kinds in sorted(members.items()):
            count = sum(kinds.values())
            if count < 2:
                raise ValueError(
                    f"secure_aggregation=secagg_plus: scope {scope} has {count} client, and a sum of one client is "
                    "its update; give it at least 2 (federation.clients_per_task, federation.groups) or "
                    "secure_aggregation=none"
                )
            if count * fraction < 2:
                lines.append(
                    f"secure aggregation: scope {scope} expects {count * fraction:g} clients a round; a round that "
                    "samples one leaves it as it was (a sum of one is its update): raise federation.fraction"
                )
        return lines

    def degree(self) -> int | None:
        """The neighbours per client the protocol is given (``None``: its default; every other client for ``all``)."""
        return 10**9 if self.neighbours == "all" else None if self.neighbours == "auto" else int(self.neighbours)

    def error_bound(self, summands: int) -> float:
        """The most a decoded sum of ``summands`` vectors is off per coordinate: ``summands / (2 s)``."""
        return summands / (2 * scale(self.clip_range, self.bits, summands))


def no_secure_aggregation() -> None:
    """``secure_aggregation=none``: the server sees each update (configs/secure_aggregation/none.yaml)."""
    return None


class SecureRound:
    """One round's server side: the clients' instructions, then the protocol per scope and the means.

    Args:
        settings: The config group's settings.
        strategy: The route.
        state: The state the round's clients are sent.
        specs: The round's sampled clients, in sampling order.
        plan: Each client's local steps (what it sends).
        round_idx: The round.
        seed: Seeds the neighbour graphs (public; the server's draw).
        privacy: Client-level DP (its protected parts are clipped jointly on the client and summed
            unweighted, for the private combine to noise); ``None``: off.

    Raises:
        ValueError: Clients of one scope route different layouts into it.

    """

    def __init__(
        self,
        settings: SecureAggregation,
        strategy: Strategy,
        state: ServerState,
        specs: Sequence[ClientSpec],
        plan: Mapping[str, Sequence[LocalStep]],
        round_idx: int,
        seed: int,
        privacy: DifferentialPrivacy | None = None,
    ) -> None:
        self.settings, self.round = settings, round_idx
        self.protected = tuple(PART_PREFIXES[p] for p in privacy.parts) if privacy is not None else ()
        self.clip = privacy.current_clip(state) if privacy is not None else None
        self.privacy = privacy
        self.rng = random.Random(seed)
        self.weights = {
            s.client_id: update_weight(ClientUpdate(s.client_id, s.tasks, len(s.train_indices), {}), strategy.weighting)
            for s in specs
        }
        self.routes: dict[str, dict[str, Route]] = {}  # client -> scope -> layout
        self.layouts: dict[str, tuple[str, ...]] = {}  # scope -> its keys, in vector order
        self.shapes: dict[str, dict[str, torch.Size]] = {}
        self.references = {s.client_id: reference_of(state, s.client_id, s.tasks) for s in specs}
        for spec in specs:
            sends = sorted({p for step in plan[spec.client_id] for p in step.sends})
            reference = self.references[spec.client_id]
            layout = {k: v.new_empty(0) for k, v in select(reference, part_prefixes(sends, spec.tasks)).items()}
            origin = {id(v): k for k, v in layout.items()}
            routes = {}
            for scope, part in strategy.route(ClientUpdate(spec.client_id, spec.tasks, 0, layout), state):
                keys = tuple(sorted(part))
                known = self.layouts.setdefault(scope, keys)
                if keys != known:
                    raise ValueError(f"secure aggregation: clients route different keys into scope {scope}")
                routes[scope] = tuple((k, origin[id(part[k])]) for k in keys)
                self.shapes.setdefault(scope, {k: reference[origin[id(part[k])]].shape for k in keys})
            self.routes[spec.client_id] = routes
        self.groups = {s: [c for c, r in self.routes.items() if s in r] for s in self.layouts}
        self.largest = {s: max(self.weights[c] for c in g) for s, g in self.groups.items()}

    def threshold(self, scope: str) -> int | None:
        """``scope``'s threshold: the setting; with distributed noise fixed from its sampled clients; ``None``: auto."""
        if self.settings.threshold != "auto":
            return int(self.settings.threshold)
        if self.distributed:
            n = len(self.groups[scope])
            degree = self.settings.degree()
            return default_threshold(min(n - 1, default_degree(n) if degree is None else degree))
        return None

    @property
    def distributed(self) -> bool:
        """Whether the clients add the DP noise before masking."""
        return self.privacy is not None and self.settings.dp_noise == "distributed"

    def noise_std(self, scope: str) -> float:
        """With distributed noise, a client's noise std on ``scope``: ``z C / sqrt(t)``; ``t`` inputs carry ``z C``."""
        if not self.distributed or self.privacy is None or self.clip is None:
            return 0.0
        t = self.threshold(scope)
        assert t is not None
        return self.privacy.update_multiplier * self.clip / math.sqrt(t)

    def instructions(self) -> dict[str, Instructions]:
        """What each client needs to encode its update (sent with its training call)."""
        summands = {s: len(g) for s, g in self.groups.items()}
        noise = {s: self.noise_std(s) for s in self.groups}
        return {
            c: Instructions(
                self.round, routes, {s: self.weights[c] / self.largest[s] for s in routes},
                {s: summands[s] for s in routes}, self.settings.bits, self.settings.clip_range,
                self.protected, self.clip, {s: noise[s] for s in routes},
            )
            for c, routes in self.routes.items()
        }  # fmt: skip

    def length(self, scope: str) -> int:
        """A scope's vector length: its values, the clipped share and the within-the-bound bit."""
        return sum(shape.numel() for shape in self.shapes[scope].values()) + 2

    def run(self, exchange: Exchange, trained: Sequence[str]) -> Secured:
        """The protocol over every scope with the clients that ``trained``: what the fold takes in.

        A scope left with one client (sampled alone, or alone after dropouts before masking) is
        not summed this round: it keeps the state it was sent (``secure_skipped``).

        Raises:
            Aborted: Too many dropouts to recover a secret a sum needs.

        """
        s = self.settings
        servers: dict[str, ServerScope] = {}
        alone: list[str] = []  # scopes left with one client: not summed (the sum would be its update)
        for scope, group in self.groups.items():
            members = [c for c in group if c in trained]
            if len(members) < 2:
                alone.append(scope)
                continue
            threshold = self.threshold(scope)
            try:
                servers[scope] = ServerScope(
                    self.round, scope, members, self.length(scope), s.bits, s.degree(), threshold, self.rng
                )
            except ValueError as err:  # fewer clients left than the distributed noise is accounted for
                raise Aborted(f"scope {scope}: {len(members)} clients trained: {err}") from None
        sent = received = 0
        replies: Mapping[str, Mapping[str, Any]] = {}
        for step in STEPS:
            per_scope: dict[str, Mapping[str, Any]] = {}
            for scope, server in list(servers.items()):
                answers = _of(replies, scope)
                if step == "advertise":
                    per_scope[scope] = server.assignments
                elif step == "share":
                    per_scope[scope] = server.relay_keys(answers)
                elif step == "mask":
                    per_scope[scope] = server.relay_shares(answers)
                else:
                    try:
                        per_scope[scope] = server.unmask_requests(answers)
                    except Alone:
                        alone.append(scope)
                        del servers[scope]
            payloads: dict[str, dict[str, Any]] = {}
            for scope, by_client in per_scope.items():
                for client, payload in by_client.items():
                    payloads.setdefault(client, {})[scope] = payload
            replies = exchange(step, payloads)
            sent += sum(wire_bytes(p) for p in payloads.values())
            received += sum(wire_bytes(r, s.bits) for r in replies.values())
        out = Secured(noised=self.distributed)
        for scope, server in servers.items():
            total = server.result(_of(replies, scope))
            survivors = server.survivors
            summed = decode(total, s.clip_range, s.bits, len(self.groups[scope]), len(survivors))
            mean, sums = self._split(scope, survivors, summed[:-2])
            weight = sum(self.weights[c] for c in survivors)
            out.means[scope] = (mean, weight)
            if sums:
                out.sums[scope] = sums
            out.within += float(summed[-1])
            out.metrics["secure_clipped"] = max(
                out.metrics.get("secure_clipped", 0.0), float(summed[-2]) / len(survivors)
            )
        out.skipped = sorted(alone)
        out.metrics.update({
            "secure_skipped": float(len(alone)),
            "secure_bytes_up": float(received),
            "secure_bytes_down": float(sent),
            "secure_dropped": float(len(trained) - len({c for sv in servers.values() for c in sv.survivors})),
        })  # fmt: skip
        return out

    def _split(self, scope: str, survivors: Sequence[str], decoded: torch.Tensor) -> tuple[State, State]:
        """``scope``'s weighted mean of its unprotected keys, and the sums of its protected (DP) keys' clipped changes.

        A mean: the survivors' weighted mean start plus the decoded sum times the largest weight
        over the survivors' total. A sum: as decoded (the private combine divides and noises it).
        """
        weight = sum(self.weights[c] for c in survivors)
        factor = self.largest[scope] / weight
        mean: State = {}
        sums: State = {}
        offset = 0
        sources = {c: dict(self.routes[c][scope]) for c in survivors}  # the scope's key -> the client's key
        for key in self.layouts[scope]:
            shape = self.shapes[scope][key]
            part = decoded[offset : offset + shape.numel()].reshape(shape)
            offset += shape.numel()
            starts = [self.references[c][sources[c][key]] for c in survivors]
            if is_protected(key, starts[0], self.protected, self.clip):
                sums[key] = part
                continue
            start = sum(v.double() * (self.weights[c] / weight) for c, v in zip(survivors, starts, strict=True))
            value = start + part * factor
            dtype = starts[0].dtype
            mean[key] = value.to(dtype) if dtype.is_floating_point else torch.round(value).to(dtype)
        return mean, sums


@dataclass
class Secured:
    """What a secure round gives the fold.

    Attributes:
        means: Per scope, the weighted mean of its unprotected keys and the survivors' total weight.
        sums: Per scope, the sums of its protected keys' jointly clipped changes (under DP).
        noised: Whether the sums already carry the DP noise (distributed noise).
        within: How many survivors' protected change was within the clip (the count adaptive clipping noises).
        skipped: Scopes left with one client this round (not summed: kept as they were sent).
        metrics: ``secure_bytes_up``, ``secure_bytes_down`` (all clients), ``secure_dropped``,
            ``secure_clipped``, ``secure_skipped``.

    """

    means: dict[str, tuple[State, float]] = field(default_factory=dict)
    sums: dict[str, State] = field(default_factory=dict)
    noised: bool = False
    within: float = 0.0
    skipped: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def _of(replies: Mapping[str, Mapping[str, Any]], scope: str) -> dict[str, Any]:
    """Each client's reply for ``scope``."""
    return {c: r[scope] for c, r in replies.items() if scope in r}
