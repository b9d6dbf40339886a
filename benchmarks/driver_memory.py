"""The driver's memory while it aggregates a round, against the number of clients: streamed and batched.

Each measurement runs in its own process. It builds the default run's model (``mfed.run.build``
with the given overrides), then aggregates one M-Fed round of N synthetic updates (the model's
own tensors plus noise, tasks in turn, the keys and sizes a real client sends):

- ``streamed``: each update is made, folded in (``Pipeline(strategy).round(...).add``) and dropped,
  which is what the driver does with results as they arrive;
- ``batched``: every update is made and kept, then ``Strategy.aggregate`` runs over the list
  (what a driver that waits for the whole round holds).

- ``straggler``: the updates come through the Ray backend's gather loop
  (:func:`mfed.federation.gather.gather`) from a scripted Ray on 2 hosts where the first sampled
  client answers last, and are folded in the order gather passes them on: what the driver holds
  behind a straggler (gather's window bounds it);
- ``unbounded``: the same with the window lifted (every other client is sent at once), as the
  gather loop was before it had one.

Prints one row per (N, mode): the peak resident memory above the process's before the round
(sampled after every update and after the aggregate), the seconds the round took, and whether
every mode gives the same encoder (a float64 sum of its values, compared exactly).

Usage: python benchmarks/driver_memory.py [--clients 10,100,1000] [--modes streamed,batched] [hydra overrides]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import psutil

from mfed.aggregation.fold import Pipeline, aggregate


def child(mode: str, n: int, overrides: list[str]) -> None:
    import torch

    from mfed.config import load_config
    from mfed.run import build
    from mfed.types import ClientUpdate

    driver = build(load_config(["logger=none", "data.test=null", *overrides]))
    model, strategy, tasks = driver.model.state_dict(), driver.strategy, sorted(driver.tasks)
    state = strategy.init_state(driver.model)

    def update(i: int) -> ClientUpdate:
        task = tasks[i % len(tasks)]
        keys = [k for k in model if k.startswith(("encoder.", f"decoders.{task}."))]
        g = torch.Generator().manual_seed(i)
        tensors = {
            k: model[k] + 0.01 * torch.randn(model[k].shape, generator=g) if model[k].is_floating_point() else model[k]
            for k in keys
        }
        return ClientUpdate(f"{task}-{i}", task, 100 + i % 7, tensors)

    process = psutil.Process()
    before = peak = process.memory_info().rss

    def sampled(x):
        nonlocal peak
        peak = max(peak, process.memory_info().rss)
        return x

    start = time.perf_counter()
    if mode in ("straggler", "unbounded"):
        fold = Pipeline(strategy).round(state)
        for u in straggling(n, update, lambda i: f"{tasks[i % len(tasks)]}-{i}", unbounded=mode == "unbounded"):
            sampled(fold.add(u))
        result = sampled(fold.result()[0])
    elif mode == "streamed":
        fold = Pipeline(strategy).round(state)
        for i in range(n):
            sampled(fold.add(update(i)))
        result = sampled(fold.result()[0])
    else:
        result = sampled(aggregate(strategy, state, sampled([sampled(update(i)) for i in range(n)])))
    seconds = time.perf_counter() - start
    peak -= before
    checksum = float(sum(t.double().sum() for t in result["global"].values()))
    print("RESULT " + json.dumps({"peak_mb": peak / 2**20, "s": seconds, "checksum": checksum}))
    update_mb = sum(t.numel() * t.element_size() for t in update(0).state.values()) / 2**20
    print(f"UPDATE {update_mb:.2f}")


def straggling(n: int, update, name, unbounded: bool):
    """The n updates through gather from a scripted Ray whose client 0 answers only when nothing else runs."""
    import types

    from mfed.federation import gather as gather_module

    if unbounded:
        gather_module.WINDOW_PER_HOST = 10**9
    clients = [name(i) for i in range(n)]
    index = {c: i for i, c in enumerate(clients)}
    sent: dict[object, int] = {}

    def submit(client: str, host: str) -> object:
        ref = object()
        sent[ref] = index[client]
        return ref

    def wait(refs, num_returns=1, timeout=None):
        ready = [r for r in refs if sent[r] != 0] or list(refs)
        first = min(ready, key=sent.__getitem__)
        return [first], [r for r in refs if r is not first]

    def get(ref):
        return update(sent.pop(ref))  # the result exists from the moment it arrives

    died, raised = type("Died", (Exception,), {}), type("Raised", (Exception,), {})
    errors = types.SimpleNamespace(RayActorError=died, RayTaskError=raised)
    sys.modules["ray"] = types.SimpleNamespace(wait=wait, get=get, exceptions=errors)  # type: ignore[assignment]
    sys.modules["ray.exceptions"] = errors  # type: ignore[assignment]
    hosts = ["h0", "h1"]
    home = {c: hosts[i % 2] for c, i in index.items()}
    yield from gather_module.gather(clients, submit, lambda c, r: None, home.__getitem__, lambda: hosts, 0, None, "run")


def measure(mode: str, n: int, overrides: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(n), *overrides], capture_output=True, text=True, check=False
    )
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in done.stdout.splitlines() if " " in line}
    if done.returncode != 0 or "RESULT" not in lines:
        raise SystemExit(f"{mode} {n} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(lines["RESULT"]), "update_mb": float(lines["UPDATE"])}


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="10,100,1000")
    parser.add_argument("--modes", default="streamed,batched")
    args, overrides = parser.parse_known_args()
    print(f"{'clients':>8} {'mode':>9} {'peak MB':>9} {'s':>7} {'same state':>11}")
    for n in (int(x) for x in args.clients.split(",")):
        rows = {mode: measure(mode, n, overrides) for mode in args.modes.split(",")}
        same = len({row["checksum"] for row in rows.values()}) == 1
        for mode, row in rows.items():
            print(f"{n:>8} {mode:>9} {row['peak_mb']:>9.1f} {row['s']:>7.2f} {str(same):>11}")
    print(f"(one update: {next(iter(rows.values()))['update_mb']:.2f} MB)")


if __name__ == "__main__":
    main()
