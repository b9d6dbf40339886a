"""How fast any engine of single-threaded client processes could be, against one process using every core.

A round's arithmetic is the same whoever runs it; what an engine of P worker processes (Ray's
actors, one thread each) can gain over a plain loop (one process, P intra-op threads) is only how
much better P concurrent single-threaded processes use the cores than P threads do. This script
measures that on the default run's clients: one local epoch of the first client of every task
(one "unit" of work, M-Fed's proximal term left out), timed in P worker processes built once:

- ``alone-1``: one worker, one thread, the others idle;
- ``alone-P``: one worker, P threads (the plain loop's setting);
- ``concurrent``: every worker at once, one thread each (the mean of their times).

Each cycle times every mode once, the order rotating, so the machine's drift hits each alike.

The ceiling is the time per unit of an ideal P-process engine (no overhead, no idle core:
``concurrent`` / P) over the plain loop's (``alone-P``). An engine cannot go below it on this
machine without doing less arithmetic.

Usage:
    python benchmarks/parallel_ceiling.py [--repeats 4] [--processes P] [hydra overrides]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time


def build_clients(overrides: list[str]) -> tuple[object, list[tuple]]:
    """The default run's setup and, per task, its first client: (task, name, training shard, model)."""
    from mfed.config import load_config
    from mfed.federation.client import shard
    from mfed.run import build

    with tempfile.TemporaryDirectory() as tmp:
        driver = build(load_config(["backend=serial", "logger=none", f"out_dir={tmp}/run", *overrides]))
    setup, firsts = driver.setup, {}
    for spec in driver.specs:
        firsts.setdefault(spec.tasks[0], spec)
    clients = []
    for name, spec in firsts.items():
        task = setup.tasks[name]
        clients.append(
            (task, name, shard(setup.dataset, spec.train_indices, [task.target_key]), setup.model_factory([task]))
        )
    return setup, clients


def worker(overrides: list[str], conn) -> None:
    """Build the clients once, then time one unit per request ``threads`` (``None`` ends)."""
    import torch
    from torch.utils.data import DataLoader

    setup, clients = build_clients(overrides)

    def unit() -> float:
        start = time.perf_counter()
        for task, name, data, model in clients:
            optimizer = setup.optimizer(list(model.parameters()))
            model.train()
            for _ in range(setup.config.local_epochs):
                for batch in DataLoader(data, batch_size=setup.config.batch_size, shuffle=True):
                    loss = task.loss(model(batch["image"], name), batch[task.target_key])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        return time.perf_counter() - start

    torch.set_num_threads(1)
    unit()  # warm-up: first-call allocations, oneDNN kernel selection
    conn.send("ready")
    while (threads := conn.recv()) is not None:
        torch.set_num_threads(threads)
        conn.send(unit())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4, help="cycles; each times every mode once")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args, overrides = parser.parse_known_args()
    p = args.processes
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(p)]
    procs = [ctx.Process(target=worker, args=(overrides, child), daemon=True) for _, child in pipes]
    for proc in procs:
        proc.start()
    conns = [parent for parent, _ in pipes]
    for conn in conns:
        assert conn.recv() == "ready"

    def alone(threads: int) -> float:
        conns[0].send(threads)
        return conns[0].recv()

    def together() -> float:  # every process at once, one thread each; the mean of their times
        for conn in conns:
            conn.send(1)
        return statistics.mean(conn.recv() for conn in conns)

    modes = {"alone-1": lambda: alone(1), f"alone-{p}": lambda: alone(p), "concurrent": together}
    times: dict[str, list[float]] = {name: [] for name in modes}
    names = list(modes)
    for cycle in range(args.repeats):  # interleaved, the order rotating, so drift hits every mode alike
        for name in names[cycle % len(names) :] + names[: cycle % len(names)]:
            times[name].append(modes[name]())
        print(f"cycle {cycle + 1}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()), file=sys.stderr)
    for conn in conns:
        conn.send(None)
    for proc in procs:
        proc.join()
    median = {name: statistics.median(t) for name, t in times.items()}
    ceilings = [c / p / a for c, a in zip(times["concurrent"], times[f"alone-{p}"], strict=True)]
    print(f"overrides: {' '.join(overrides) or '(defaults)'}; {p} cores; {args.repeats} interleaved cycles")
    print("| mode | processes x threads | s per unit (median) | range | units per s |")
    print("|---|---|---:|---|---:|")
    for name, t in times.items():
        shape = f"{p} x 1" if name == "concurrent" else f"1 x {name.split('-')[1]}"
        rate = (p if name == "concurrent" else 1) / median[name]
        print(f"| {name} | {shape} | {median[name]:.2f} | {min(t):.2f}-{max(t):.2f} | {rate:.3f} |")
    gain, slowdown = median["alone-1"] / median[f"alone-{p}"], median["concurrent"] / median["alone-1"]
    print(f"{p} threads in one process: {gain:.2f}x one thread's speed; {p} concurrent processes: each takes "
          f"{slowdown:.2f}x its time alone")  # fmt: skip
    print(f"CEILING: an ideal {p}-process engine takes {statistics.median(ceilings):.2f}x the plain loop's time "
          f"(per cycle {min(ceilings):.2f}-{max(ceilings):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
