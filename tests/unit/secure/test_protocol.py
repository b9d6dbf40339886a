"""SecAgg+ for one scope (:mod:`mfed.secure.protocol`, :mod:`mfed.secure.graph`): sums, dropouts, what is seen."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats

from mfed.secure.graph import default_degree, default_threshold, neighbours
from mfed.secure.keys import TamperedShare
from mfed.secure.masks import ring_sum
from mfed.secure.protocol import Aborted, ClientScope, ServerScope, Unmasking, run_in_memory, wire_bytes

B = 32


def inputs(ids: list[str], n: int, seed: int = 0, bits: int = 20) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    return {u: gen.integers(0, 2**bits, n, dtype=np.uint64) for u in ids}


def plain_sum(x: dict[str, np.ndarray], ids: list[str]) -> np.ndarray:
    """The reference: the inputs' sum modulo 2^B, with Python integers (not the ring code under test)."""
    n = len(next(iter(x.values())))
    return np.array([sum(int(x[u][i]) for u in ids) % 2**B for i in range(n)], dtype=np.uint64)


def ids_of(n: int) -> list[str]:
    return [f"client{i:03d}" for i in range(n)]


def through_sharing(server: ServerScope) -> tuple[dict[str, ClientScope], dict[str, dict[str, bytes]]]:
    """Steps 1 and 2 with every member: the clients, and the sealed shares relayed to each."""
    clients = {u: ClientScope(u, a) for u, a in server.assignments.items()}
    keys = server.relay_keys({u: c.advertise() for u, c in clients.items()})
    return clients, server.relay_shares({u: c.share_keys(keys[u]) for u, c in clients.items()})


@pytest.mark.parametrize("n, degree", [(6, None), (10, None), (30, 8), (40, 6)])
def test_graph_is_symmetric_regular_and_complete_when_small(n: int, degree: int | None) -> None:
    ids = ids_of(n)
    graph = neighbours(ids, degree, random.Random(3))
    k = default_degree(n) if degree is None else degree
    assert all(len(vs) == min(k, n - 1) for vs in graph.values())
    assert all(u not in vs and all(u in graph[v] for v in vs) for u, vs in graph.items())
    if n <= 17:
        assert default_degree(n) == n - 1
    assert neighbours(ids, degree, random.Random(3)) == graph  # the server's draw, reproducible
    assert n <= 17 or neighbours(ids, degree, random.Random(4)) != graph


def test_default_degree_grows_as_log_n_and_threshold_is_a_majority() -> None:
    assert [default_degree(n) for n in (2, 17, 18, 100, 1000)] == [1, 16, 17, 28, 40]
    assert [default_threshold(k) for k in (1, 5, 16, 28)] == [2, 4, 9, 15]


def test_odd_sparse_degree_is_refused_naming_the_fix() -> None:
    with pytest.raises(ValueError, match="neighbours=7 is odd.*use 8"):
        neighbours(ids_of(30), 7, random.Random(0))


@pytest.mark.parametrize("n, degree", [(6, None), (12, None), (30, 8)])
def test_unmasked_sum_equals_the_plain_sum(n: int, degree: int | None) -> None:
    ids = ids_of(n)
    x = inputs(ids, 257)
    server = ServerScope(1, "global", ids, 257, B, degree, rng=random.Random(0))
    assert np.array_equal(run_in_memory(server, x), plain_sum(x, ids))
    assert server.survivors == sorted(ids)


@pytest.mark.parametrize("step", [1, 2, 3, 4])
def test_one_dropout_at_any_step_is_recovered_exactly(step: int) -> None:
    ids = ids_of(8)
    x = inputs(ids, 64, seed=step)
    server = ServerScope(2, "task:depth", ids, 64, B, rng=random.Random(1))
    total = run_in_memory(server, x, {step: ["client005"]})
    # before masking, the dropout's input is not in the sum; after it (step 4), it is
    expected = ids if step == 4 else [u for u in ids if u != "client005"]
    assert server.survivors == sorted(expected)
    assert np.array_equal(total, plain_sum(x, expected))


def test_n_minus_t_dropouts_after_masking_are_recovered_and_one_more_aborts() -> None:
    ids = ids_of(9)  # SecAgg: 8 neighbours, t = 5; n - t = 4
    x = inputs(ids, 32)
    server = ServerScope(1, "global", ids, 32, B, rng=random.Random(0))
    assert server.threshold == 5
    dropped = ids[:4]
    total = run_in_memory(server, x, {3: dropped})
    assert np.array_equal(total, plain_sum(x, ids[4:]))
    with pytest.raises(Aborted, match="too many clients dropped out"):
        run_in_memory(ServerScope(1, "global", ids, 32, B, rng=random.Random(0)), x, {3: ids[:5]})


def test_sparse_graph_dropouts_and_the_limit_per_neighbourhood() -> None:
    ids = ids_of(30)
    x = inputs(ids, 16)
    server = ServerScope(1, "global", ids, 16, B, degree=6, rng=random.Random(5))  # 7 holders, t = 4
    victim = ids[0]
    near = list(server.graph[victim])
    total = run_in_memory(server, x, {3: [victim, *near[:2]]})  # 4 of the victim's 7 holders answer
    assert np.array_equal(total, plain_sum(x, [u for u in ids if u not in [victim, *near[:2]]]))
    server = ServerScope(1, "global", ids, 16, B, degree=6, rng=random.Random(5))
    with pytest.raises(Aborted, match=f"shares of {victim}'s secret came back"):
        run_in_memory(server, x, {3: [victim, *near[:4]]})  # 3 left: fewer than t


def test_a_lone_member_is_never_summed() -> None:
    with pytest.raises(Aborted, match="a sum of one is its update"):
        ServerScope(1, "task:edges", ["only"], 4, B)
    ids = ids_of(3)
    with pytest.raises(Aborted, match="a sum of one is its update"):
        run_in_memory(ServerScope(1, "t", ids, 4, B, threshold=2), inputs(ids, 4), {3: ids[:2]})


def test_what_the_server_receives_is_uniform_and_uncorrelated_with_the_input() -> None:
    ids = ids_of(5)
    n, bits = 20000, 16
    x = {u: np.full(n, 7 * i, dtype=np.uint64) for i, u in enumerate(ids)}  # constant inputs
    x[ids[0]] = np.arange(n, dtype=np.uint64) % 2**bits  # and a ramp
    server = ServerScope(1, "global", ids, n, bits, rng=random.Random(0))
    clients, inbox = through_sharing(server)
    masked = {u: c.masked_input(inbox[u], x[u]) for u, c in clients.items()}
    for u, y in masked.items():
        counts = np.bincount((y >> (bits - 5)).astype(np.int64), minlength=32)  # 32 bins over the ring
        assert stats.chisquare(counts).pvalue > 1e-6, u
        assert abs(np.corrcoef(y.astype(np.float64), x[ids[0]].astype(np.float64))[0, 1]) < 0.05, u
    # the sealed shares the server relays hide the secrets: none contains a public key or another's box
    for boxes in inbox.values():
        assert len(set(boxes.values())) == len(boxes)
    requests = server.unmask_requests(masked)
    answers = {u: c.unmask(*requests[u]) for u, c in clients.items()}
    assert np.array_equal(server.result(answers), ring_sum(list(x.values()), bits))


def test_the_server_never_learns_both_secrets_of_one_client() -> None:
    ids = ids_of(6)
    server = ServerScope(1, "global", ids, 8, B, rng=random.Random(0))
    clients, inbox = through_sharing(server)
    masked = {u: c.masked_input(inbox[u], np.zeros(8, np.uint64)) for u, c in clients.items() if u != ids[0]}
    requests = server.unmask_requests(masked)
    answers = {u: clients[u].unmask(*requests[u]) for u in requests}
    asked_seeds = {v for a in answers.values() for v in a.seeds}
    asked_keys = {v for a in answers.values() for v in a.keys}
    assert asked_keys == {ids[0]} and not asked_seeds & asked_keys
    # a server that asks for both is refused, and a client answers once
    fresh = ServerScope(1, "global", ids, 8, B, rng=random.Random(0))
    cs, box = through_sharing(fresh)
    for u, c in cs.items():
        c.masked_input(box[u], np.zeros(8, np.uint64))
    with pytest.raises(ValueError, match="both as survived and dropped: refused"):
        cs[ids[1]].unmask([ids[1], ids[2]], [ids[2]])
    with pytest.raises(RuntimeError, match="once each, in order"):
        cs[ids[1]].unmask([ids[1]], [])


def test_a_tampered_share_is_refused() -> None:
    ids = ids_of(4)
    server = ServerScope(1, "global", ids, 4, B, rng=random.Random(0))
    clients, inbox = through_sharing(server)
    sender = next(iter(inbox[ids[0]]))
    box = bytearray(inbox[ids[0]][sender])
    box[-1] ^= 1
    with pytest.raises(TamperedShare):
        clients[ids[0]].masked_input({**inbox[ids[0]], sender: bytes(box)}, np.zeros(4, np.uint64))
    # a share relayed to the wrong recipient fails too (bound to sender and receiver)
    other = ids[1] if sender != ids[1] else ids[2]
    with pytest.raises(TamperedShare):
        clients[other].masked_input({**inbox[other], sender: inbox[ids[0]][sender]}, np.zeros(4, np.uint64))


def test_masks_are_bound_to_the_scope_and_round() -> None:
    """The same clients in two scopes (or rounds) agree different masks: one scope's sum reveals nothing of another."""
    ids = ids_of(3)
    zeros = {u: np.zeros(64, np.uint64) for u in ids}
    outs = []
    for scope, round_idx in [("global", 1), ("task:depth", 1), ("global", 2)]:
        server = ServerScope(round_idx, scope, ids, 64, B, threshold=2, rng=random.Random(0))
        clients, inbox = through_sharing(server)
        outs.append({u: c.masked_input(inbox[u], zeros[u]) for u, c in clients.items()})
    assert all(not np.array_equal(outs[0][u], outs[i][u]) for u in ids for i in (1, 2))


def test_wire_bytes_counts_keys_shares_and_packed_vectors() -> None:
    ids = ids_of(4)
    server = ServerScope(1, "global", ids, 1000, 24, rng=random.Random(0))
    client = ClientScope(ids[0], server.assignments[ids[0]])
    assert wire_bytes(client.advertise()) == 64
    assert wire_bytes(np.zeros(1000, np.uint64), bits=24) == 3000
    assert wire_bytes(Unmasking(seeds={"a": b"12345"}, keys={"b": b"12"})) == 7
