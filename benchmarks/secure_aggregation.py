"""What secure aggregation costs: the protocol's bytes and seconds per client, and a real round against the plain one.

Usage: python benchmarks/secure_aggregation.py [--clients 6,100,1000] [--rounds 4] [--skip-rounds] [--scale]

1. **The protocol alone** (in this process, :func:`mfed.secure.protocol.run_in_memory`): one scope
   whose vector is the default model's encoder (72,470 values and 2 counters), at each number of
   clients in a round, SecAgg+ (``neighbours=auto``) against SecAgg (``all``); bytes a client sends
   and receives over the four steps (keys, sealed shares, masked vector at ceil(b/8) bytes, shares
   for unmasking), the plain upload of the same values as float32 beside them, and the seconds
   the whole round takes (every client and the server, one after another). A setting whose mask
   expansions alone would pass ``--budget-s`` is not run, and its estimate is printed instead.
2. **A real round** (the default run on the Ray backend, ``--rounds`` rounds, plain then secure in
   one process): the median seconds per round after the first, and their ratio (the target: 1.2x).
   ``--scale``: benchmark=privacy_scale's federation instead, 100 of 1,002 clients a round.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import numpy as np

from mfed.secure.graph import default_degree
from mfed.secure.masks import prg
from mfed.secure.protocol import ClientScope, ServerScope, wire_bytes

ENCODER = 72470  # the default model's encoder parameters (model=conv)
BITS = 48


def protocol(n: int, degree: int | None, length: int) -> dict[str, float]:
    """One scope's round with ``n`` clients: bytes per client up and down, and seconds."""
    ids = [f"c{i:04d}" for i in range(n)]
    gen = np.random.default_rng(0)
    inputs = {u: gen.integers(0, 2**20, length, dtype=np.uint64) for u in ids}
    start = time.perf_counter()
    server = ServerScope(1, "global", ids, length, BITS, degree, rng=random.Random(0))
    clients = {u: ClientScope(u, a) for u, a in server.assignments.items()}
    up = down = 0

    def count(payloads: dict, replies: dict) -> None:
        nonlocal up, down
        down += sum(wire_bytes(p) for p in payloads.values())
        up += sum(wire_bytes(r, BITS) for r in replies.values())

    advertised = {u: c.advertise() for u, c in clients.items()}
    count(server.assignments, advertised)
    keys = server.relay_keys(advertised)
    sealed = {u: c.share_keys(keys[u]) for u, c in clients.items()}
    count(keys, sealed)
    inbox = server.relay_shares(sealed)
    masked = {u: c.masked_input(inbox[u], inputs[u]) for u, c in clients.items()}
    count(inbox, masked)
    requests = server.unmask_requests(masked)
    answers = {u: c.unmask(*requests[u]) for u, c in clients.items()}
    count(requests, answers)
    server.result(answers)
    seconds = time.perf_counter() - start
    return {"up": up / n, "down": down / n, "seconds": seconds, "degree": len(server.graph[ids[0]])}


def prg_rate(length: int) -> float:
    """Seconds to expand one mask of ``length`` values (for estimates)."""
    start = time.perf_counter()
    for i in range(20):
        prg(bytes([i]) * 32, length, BITS)
    return (time.perf_counter() - start) / 20


SCALE = [  # benchmark=privacy_scale's federation: 1,002 clients of 10 scenes, 100 sampled a round
    "backend.clients_per_actor=auto", "backend.client_cache=1002", "federation.clients_per_task=334",
    "data.pool.size=32", "data.pool.length=10020", "data.test.length=200", "federation.fraction=0.1",
    "federation.eval_every=100",
]  # fmt: skip


def round_times(rounds: int, secure: bool, extra: list[str]) -> list[float]:
    """Seconds per round of a run on Ray (the default run, with ``extra`` overrides)."""
    from mfed.config import load_config
    from mfed.run import build

    with tempfile.TemporaryDirectory() as tmp:
        overrides = ["logger=none", f"federation.rounds={rounds}", f"out_dir={tmp}", *extra]
        driver = build(load_config([*overrides, *(["secure_aggregation=secagg_plus"] if secure else [])]))
        driver.callbacks = []
        history = driver.run()
    return [row["time/round_s"] for row in history]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="6,100,1000")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--skip-rounds", action="store_true")
    parser.add_argument("--scale", action="store_true", help="the real rounds at 100 of 1,002 clients a round")
    args = parser.parse_args()
    length = ENCODER + 2
    per_mask = prg_rate(length)
    plain = 4 * ENCODER
    print(f"one scope of {length} values, b = {BITS}; one mask expansion: {per_mask * 1e3:.2f} ms")
    print(f"{'clients':>8s} {'mode':8s} {'k':>5s} {'up kB':>9s} {'down kB':>9s} {'up / plain':>10s} {'round s':>9s}")
    for n in (int(x) for x in args.clients.split(",")):
        for mode, degree in (("secagg+", None), ("secagg", 10**9)):
            k = min(n - 1, default_degree(n) if degree is None else degree)
            estimate = n * (k + 2) * per_mask  # every client's masks, and the server's self masks
            if estimate > args.budget_s:
                skipped = f"{'-':>9s} {'-':>9s} {'-':>10s} {'~' + format(estimate, '.0f'):>9s}"
                print(f"{n:8d} {mode:8s} {k:5d} {skipped}  not run (estimated)")
                continue
            r = protocol(n, degree, length)
            print(
                f"{n:8d} {mode:8s} {r['degree']:5d} {r['up'] / 1e3:9.1f} {r['down'] / 1e3:9.1f} "
                f"{r['up'] / plain:9.2f}x {r['seconds']:9.2f}"
            )
    if args.skip_rounds:
        return
    extra, what = (SCALE, "100 of 1,002 clients a round") if args.scale else ([], "the default run")
    plain_rounds, secure_rounds = round_times(args.rounds, False, extra), round_times(args.rounds, True, extra)
    a, b = statistics.median(plain_rounds[1:]), statistics.median(secure_rounds[1:])
    print(f"{what} on Ray, rounds 2-{args.rounds}: plain {plain_rounds}, secure {secure_rounds}")
    print(f"median s/round: plain {a:.2f}, secure {b:.2f}, secure / plain {b / a:.2f}x (target 1.2x)")


if __name__ == "__main__":
    main()
