"""SecAgg+ for one aggregation scope and one round: the client's side and the server's.

Four steps (Bonawitz et al., CCS 2017, section 4; Bell et al., CCS 2020, for the neighbourhoods).
``U1 ⊇ U2 ⊇ U3 ⊇ U4`` are the clients still answering after each step; a client that stops
answering at any step is a dropout.

0. **Setup** (server, public): the scope's group (the round's clients that fold into it), each
   member's Shamir point (its rank in the sorted group, from 1), the neighbour graph
   (:mod:`mfed.secure.graph`) and the threshold ``t``: :class:`ServerScope` makes each member's
   :class:`Assignment`.
1. **Advertise keys**: each client makes two fresh X25519 pairs, ``c`` (to seal shares) and ``s``
   (to agree masks), and sends the public keys. The server sends each client of ``U1`` its
   neighbours' keys (those in ``U1``).
2. **Share keys**: each client draws a fresh 32-byte self-mask seed ``b_u``, splits ``s_u``'s private
   key and ``b_u`` into ``t``-of-``h`` Shamir shares among its holders (itself and its neighbours in
   ``U1``), and seals each neighbour's pair under their agreed ``c`` key (ChaCha20-Poly1305; the
   round, scope and both ids authenticated). The server relays to each client of ``U2`` the sealed
   shares from its neighbours in ``U2``: it cannot open them.
3. **Masked input**: each client opens its shares (a tampered one is refused) and sends
   ``y_u = x_u + PRG(b_u) + sum_{v in N(u) ∩ U2} ±PRG(s_uv)`` in ``Z_{2^b}`` (``+`` when
   ``u < v``): the pairwise masks of each pair cancel in the sum, the self mask hides ``x_u`` even
   from a server that later learns ``s_u``.
4. **Unmasking**: the server asks each client of ``U3`` for its shares of ``b_v`` for every
   surviving neighbour (and itself) and of ``s_d``'s private key for every neighbour that dropped
   after step 2. Each client answers once, and never for one id in both lists: the server learns,
   for each client, either its self mask (it survived) or its pairwise masks (it dropped), never
   both. From ``t`` shares each, the server removes every survivor's self mask and the
   survivors' masks with the dropped, leaving ``sum_{u in U3} x_u``.

Too many dropouts (a secret with fewer than ``t`` shares left, or a member whose holders fell
below ``t`` before it could share) end the scope's round with :class:`Aborted`, never a wrong sum.
Every message is plain bytes or a numpy ``uint64`` array; :func:`wire_bytes` counts them.
Trust model and limits: :mod:`mfed.secure`.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mfed.secure.graph import default_threshold
from mfed.secure.graph import neighbours as graph_neighbours
from mfed.secure.keys import KeyPair, kdf_context, open_sealed, seal, shared_key
from mfed.secure.masks import SEED_BYTES, Ring, check_bits, pairwise_mask, prg, ring_sub, ring_sum
from mfed.secure.shamir import Share, reconstruct, share


class Aborted(RuntimeError):
    """A scope's round cannot finish: too few clients are left to recover a secret it needs."""


class Alone(Aborted):
    """A scope has one client left: its sum would be that client's input, so it is not computed."""


@dataclass(frozen=True)
class Assignment:
    """What the server tells one member of a scope's group before step 1 (all public).

    Attributes:
        round: The round.
        scope: The aggregation scope (``global``, ``task:<t>``, ...).
        point: This member's Shamir point.
        neighbours: Each neighbour's id and point.
        threshold: ``t``: shares needed to recover a secret.
        bits: The ring's bit width ``b``.
        length: The length of the vector to be summed.

    """

    round: int
    scope: str
    point: int
    neighbours: Mapping[str, int]
    threshold: int
    bits: int
    length: int


@dataclass(frozen=True)
class PublicKeys:
    """Step 1's message: the public keys to seal shares to (``c``) and to agree masks with (``s``)."""

    c: bytes
    s: bytes


@dataclass(frozen=True)
class Unmasking:
    """Step 4's message: serialised shares of survivors' self-mask seeds and of dropped clients' mask keys."""

    seeds: Mapping[str, bytes] = field(default_factory=dict)
    keys: Mapping[str, bytes] = field(default_factory=dict)


def _sign(u: str, v: str) -> int:
    """Who adds and who subtracts a pair's mask: the smaller id adds."""
    return 1 if u < v else -1


def _pair_context(purpose: str, assignment_round: int, scope: str, u: str, v: str) -> bytes:
    """A pair's key derivation context, the same from both ends (ids in order)."""
    a, b = sorted((u, v))
    return kdf_context(purpose, assignment_round, scope, a, b)


def _sealed_context(round_idx: int, scope: str, sender: str, receiver: str) -> bytes:
    """What a sealed share is bound to: round, scope, sender and receiver (a relayed share cannot be replayed)."""
    return kdf_context("secagg-share-ad", round_idx, scope, sender, receiver)


class ClientScope:
    """One client's side of one scope's round; its private keys and seeds never leave it.

    Args:
        client_id: This client's id.
        assignment: The server's setup for it.

    Raises:
        ValueError: A threshold the holders could never reach, or a bad bit width.

    """

    def __init__(self, client_id: str, assignment: Assignment) -> None:
        check_bits(assignment.bits)
        if not 2 <= assignment.threshold <= len(assignment.neighbours) + 1:
            raise ValueError(
                f"scope {assignment.scope}: threshold {assignment.threshold} needs 2..{len(assignment.neighbours) + 1} "
                "(this client and its neighbours hold its shares)"
            )
        self.id, self.a = client_id, assignment
        self._c, self._s = KeyPair.generate(), KeyPair.generate()
        self._seed = b""
        self._keys: dict[str, PublicKeys] = {}
        self._held: dict[str, tuple[Share, Share]] = {}  # sender -> (its mask key's share, its seed's share)
        self._step = 0

    def _advance(self, step: int) -> None:
        if self._step != step - 1:
            raise RuntimeError(f"scope {self.a.scope}: step {step} asked after step {self._step} (once each, in order)")
        self._step = step

    def advertise(self) -> PublicKeys:
        """Step 1: the public keys."""
        self._advance(1)
        return PublicKeys(self._c.public, self._s.public)

    def share_keys(self, keys: Mapping[str, PublicKeys]) -> dict[str, bytes]:
        """Step 2: each neighbour's sealed pair of shares (of the mask key and of a fresh self-mask seed).

        Args:
            keys: The public keys of the neighbours still in the round (``U1``).

        Raises:
            ValueError: A key from a non-neighbour, or too few holders left to reach the threshold.

        """
        self._advance(2)
        strangers = sorted(set(keys) - set(self.a.neighbours))
        if strangers:
            raise ValueError(f"scope {self.a.scope}: keys relayed from non-neighbours {strangers[:3]}")
        holders = [self.id, *sorted(keys)]
        if len(holders) < self.a.threshold:
            raise Aborted(
                f"scope {self.a.scope}: {len(holders)} holders left for {self.id}'s shares, "
                f"threshold {self.a.threshold}"
            )
        self._keys = dict(keys)
        self._seed = secrets.token_bytes(SEED_BYTES)
        points = [self.a.point, *(self.a.neighbours[v] for v in holders[1:])]
        key_shares = share(self._s.private, self.a.threshold, points)
        seed_shares = share(self._seed, self.a.threshold, points)
        self._held[self.id] = (key_shares[0], seed_shares[0])
        out = {}
        for v, key_share, seed_share in zip(holders[1:], key_shares[1:], seed_shares[1:], strict=True):
            sealing = self._c.shared_key(
                keys[v].c, _pair_context("secagg-seal", self.a.round, self.a.scope, self.id, v)
            )
            payload = key_share.to_bytes() + seed_share.to_bytes()
            out[v] = seal(sealing, payload, _sealed_context(self.a.round, self.a.scope, self.id, v))
        return out

    def masked_input(self, sealed: Mapping[str, bytes], vector: Ring) -> Ring:
        """Step 3: ``vector`` masked; ``sealed`` are the shares relayed from the neighbours still in the round (``U2``).

        Raises:
            TamperedShare: A sealed share fails authentication.
            ValueError: Shares from non-neighbours, or a vector of the wrong length.

        """
        self._advance(3)
        strangers = sorted(set(sealed) - set(self._keys))
        if strangers:
            raise ValueError(f"scope {self.a.scope}: shares relayed from clients that sent no keys {strangers[:3]}")
        if vector.shape != (self.a.length,):
            raise ValueError(f"scope {self.a.scope}: a vector of {self.a.length} values expected, got {vector.shape}")
        for v, box in sealed.items():
            sealing = self._c.shared_key(
                self._keys[v].c, _pair_context("secagg-seal", self.a.round, self.a.scope, self.id, v)
            )
            payload = open_sealed(sealing, box, _sealed_context(self.a.round, self.a.scope, v, self.id))
            half = len(payload) // 2
            self._held[v] = (Share.from_bytes(payload[:half]), Share.from_bytes(payload[half:]))
        b, n = self.a.bits, self.a.length
        terms = [vector, prg(self._seed, n, b)]
        for v in sorted(sealed):
            seed = self._s.shared_key(
                self._keys[v].s, _pair_context("secagg-mask", self.a.round, self.a.scope, self.id, v)
            )
            terms.append(pairwise_mask(seed, n, b, _sign(self.id, v)))
        return ring_sum(terms, b)

    def unmask(self, survived: Sequence[str], dropped: Sequence[str]) -> Unmasking:
        """Step 4: shares of the survivors' seeds and of the dropped neighbours' mask keys; once, never both for one id.

        Raises:
            ValueError: An id in both lists, this client listed as dropped or not as a survivor,
                or an id whose shares this client does not hold.

        """
        self._advance(4)
        both = sorted(set(survived) & set(dropped))
        if both:
            raise ValueError(f"scope {self.a.scope}: asked to unmask {both[:3]} both as survived and dropped: refused")
        if self.id not in survived:
            raise ValueError(f"scope {self.a.scope}: {self.id} must be among the survivors it answers for")
        unknown = sorted((set(survived) | set(dropped)) - set(self._held))
        if unknown:
            raise ValueError(f"scope {self.a.scope}: {self.id} holds no shares of {unknown[:3]}")
        return Unmasking(
            seeds={u: self._held[u][1].to_bytes() for u in survived},
            keys={d: self._held[d][0].to_bytes() for d in dropped},
        )


class ServerScope:
    """The server's side of one scope's round: it relays and sums, and never holds a private key of a survivor.

    Args:
        round_idx: The round.
        scope: The aggregation scope.
        members: The scope's group this round.
        length: The vector length.
        bits: The ring's bit width.
        degree: Neighbours per member (``None``: :func:`mfed.secure.graph.default_degree`).
        threshold: ``t``; ``None``: :func:`mfed.secure.graph.default_threshold` of the degree.
        rng: Where the graph's permutation comes from.

    Attributes:
        assignments: Each member's setup, to send it.
        survivors: ``U3`` once known: the clients whose inputs the sum holds.

    """

    def __init__(
        self,
        round_idx: int,
        scope: str,
        members: Sequence[str],
        length: int,
        bits: int,
        degree: int | None = None,
        threshold: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if len(members) < 2:
            raise Alone(f"scope {scope}: {len(members)} client(s) this round; a sum of one is its update")
        self.round, self.scope, self.length, self.bits = round_idx, scope, length, check_bits(bits)
        self.graph = graph_neighbours(members, degree, rng or random.Random(0))
        k = len(next(iter(self.graph.values())))
        self.threshold = default_threshold(k) if threshold is None else threshold
        if not 2 <= self.threshold <= k + 1:
            raise ValueError(
                f"secure_aggregation.threshold={self.threshold} must lie in 2..{k + 1} for scope {scope} "
                f"({k} neighbours per client and itself hold its shares)"
            )
        points = {u: i + 1 for i, u in enumerate(sorted(members))}
        self.points = points
        self.assignments = {
            u: Assignment(
                round_idx, scope, points[u], {v: points[v] for v in self.graph[u]}, self.threshold, bits, length
            )
            for u in members
        }
        self.keys: dict[str, PublicKeys] = {}
        self.sent: set[str] = set()
        self.masked: dict[str, Ring] = {}
        self.survivors: list[str] = []

    def relay_keys(self, advertised: Mapping[str, PublicKeys]) -> dict[str, dict[str, PublicKeys]]:
        """After step 1: each advertiser's neighbours' keys (advertisers only).

        Raises:
            Aborted: An advertiser with fewer than ``t`` holders left (itself and its advertising neighbours).

        """
        self.keys = {u: k for u, k in advertised.items() if u in self.assignments}
        out = {u: {v: self.keys[v] for v in self.graph[u] if v in self.keys} for u in self.keys}
        self._enough({u: len(keys) + 1 for u, keys in out.items()}, "before sharing its keys")
        return out

    def relay_shares(self, sealed: Mapping[str, Mapping[str, bytes]]) -> dict[str, dict[str, bytes]]:
        """After step 2: each sender's inbox, the sealed shares from its neighbours that sent theirs (``U2``)."""
        self.sent = {u for u in sealed if u in self.keys}
        inbox: dict[str, dict[str, bytes]] = {u: {} for u in self.sent}
        for u in self.sent:
            for v, box in sealed[u].items():
                if v in self.sent and v in self.graph[u]:
                    inbox[v][u] = box
        return inbox

    def unmask_requests(self, masked: Mapping[str, Ring]) -> dict[str, tuple[list[str], list[str]]]:
        """After step 3: each survivor's lists (its surviving neighbours and itself; its neighbours that dropped)."""
        self.masked = {u: y for u, y in masked.items() if u in self.sent}
        self.survivors = sorted(self.masked)
        if len(self.survivors) < 2:
            raise Alone(
                f"scope {self.scope}: {len(self.survivors)} client(s) sent masked input; a sum of one is its update"
            )
        gone = self.sent - set(self.masked)
        return {
            u: (
                [u, *(v for v in self.graph[u] if v in self.masked)],
                [d for d in self.graph[u] if d in gone],
            )
            for u in self.survivors
        }

    def result(self, answers: Mapping[str, Unmasking]) -> Ring:
        """After step 4: ``sum_{u in U3} x_u`` in the ring.

        Raises:
            Aborted: A survivor's seed or a dropped client's mask key has fewer than ``t`` shares.

        """
        answers = {u: a for u, a in answers.items() if u in self.masked}
        b, n, t = self.bits, self.length, self.threshold
        total = ring_sum(list(self.masked.values()), b)
        for u in self.survivors:
            seed = reconstruct(self._shares(answers, u, "seeds", "its self mask"), t)
            total = ring_sub(total, prg(seed, n, b), b)
        gone = sorted(self.sent - set(self.masked))
        for d in gone:
            partners = [u for u in self.graph[d] if u in self.masked]
            if not partners:
                continue  # no survivor masked with it
            key = KeyPair.from_private(reconstruct(self._shares(answers, d, "keys", "its pairwise masks"), t))
            for u in partners:
                seed = shared_key(
                    key.private, self.keys[u].s, _pair_context("secagg-mask", self.round, self.scope, u, d)
                )
                total = ring_sub(total, pairwise_mask(seed, n, b, _sign(u, d)), b)
        return total

    def _shares(self, answers: Mapping[str, Unmasking], whose: str, kind: str, what: str) -> list[Share]:
        shares = [Share.from_bytes(getattr(a, kind)[whose]) for a in answers.values() if whose in getattr(a, kind)]
        if len(shares) < self.threshold:
            raise Aborted(
                f"scope {self.scope}: {len(shares)} shares of {whose}'s secret came back, {self.threshold} needed to "
                f"remove {what}: too many clients dropped out"
            )
        return shares

    def _enough(self, holders: Mapping[str, int], when: str) -> None:
        short = sorted(u for u, h in holders.items() if h < self.threshold)
        if short:
            raise Aborted(
                f"scope {self.scope}: {short[0]} has {holders[short[0]]} share holders left {when}, "
                f"threshold {self.threshold}: too many clients dropped out"
            )


def wire_bytes(message: object, bits: int = 64) -> int:
    """The bytes ``message`` takes on the wire: bytes as they are, a ring vector packed at ``ceil(bits / 8)`` a value.

    Containers count their items' values (the ids that key them are left out).
    """
    if isinstance(message, bytes | bytearray):
        return len(message)
    if isinstance(message, np.ndarray):
        return int(message.size) * -(-bits // 8)
    if isinstance(message, PublicKeys):
        return len(message.c) + len(message.s)
    if isinstance(message, Unmasking):
        return wire_bytes(dict(message.seeds)) + wire_bytes(dict(message.keys))
    if isinstance(message, Mapping):
        return sum(wire_bytes(v, bits) for v in message.values())
    if isinstance(message, Iterable) and not isinstance(message, str):
        return sum(wire_bytes(v, bits) for v in message)
    return 0


def run_in_memory(
    server: ServerScope,
    inputs: Mapping[str, Ring],
    drop: Mapping[int, Iterable[str]] | None = None,
) -> Ring:
    """The four steps with every member in this process (tests, benchmarks).

    ``drop[s]``: the clients that stop answering at step ``s`` (1 to 4).
    """
    drop = {s: set(ids) for s, ids in (drop or {}).items()}
    clients = {u: ClientScope(u, a) for u, a in server.assignments.items()}

    def alive(step: int) -> dict[str, ClientScope]:
        gone = set().union(*(ids for s, ids in drop.items() if s <= step)) if drop else set()
        return {u: c for u, c in clients.items() if u not in gone}

    keys = server.relay_keys({u: c.advertise() for u, c in alive(1).items()})
    inbox = server.relay_shares({u: c.share_keys(keys[u]) for u, c in alive(2).items() if u in keys})
    masked = {u: c.masked_input(inbox[u], inputs[u]) for u, c in alive(3).items() if u in inbox}
    requests = server.unmask_requests(masked)
    answers = {u: c.unmask(*requests[u]) for u, c in alive(4).items() if u in requests}
    return server.result(answers)


__all__ = [
    "Aborted",
    "Assignment",
    "ClientScope",
    "PublicKeys",
    "ServerScope",
    "Unmasking",
    "run_in_memory",
    "wire_bytes",
]
