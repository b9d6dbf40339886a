"""A round of mfed against a plain PyTorch loop doing the same work, each in its own process.

The plain loop is the floor: the same model, shards, batch size, optimizer, one local epoch per
sampled client, M-Fed's aggregation and a validation of every client, with no Lightning, no Ray,
one process using every core. It runs before and after the mfed backends (a Ray driver slows a
later loop in the same process, hence separate processes). Each system prints start-up (from
the built objects until round 1 begins), the end of round 1 counted from the process's own
start (imports, building and Ray included), the best and the median of the steady rounds
(after two warm-up rounds) and the peak resident memory of its whole process tree (Ray's
processes included), and the rounds as ratios to the plain loop's. ``ray`` starts its embedded
Ray; ``ray-joined`` joins a cluster started before its process (``ray start --head``), as a run
on a cluster or a benchmark's later runs do, so its end of round 1 leaves out Ray's own start.

Usage:
    python benchmarks/round_overhead.py [--rounds 6] [--systems plain,serial,ray,ray-joined,plain]
        [--clients-per-actor 1] [hydra overrides, e.g. federation.clients_per_task=4 data.pool.size=32]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import psutil

from mfed.aggregation.fold import aggregate


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def since_process_start() -> float:
    """Seconds since this process started (its interpreter's launch, imports included)."""
    return time.time() - psutil.Process().create_time()


def plain_rounds(cfg, rounds: int) -> tuple[float, list[float], float]:
    """The plain loop: returns (start-up s, seconds per round, end of round 1 since the process started)."""
    import torch
    from torch.utils.data import DataLoader

    from mfed.federation.client import round_seed, shard
    from mfed.federation.sampling import sample_clients
    from mfed.federation.summary import merge_evaluations
    from mfed.run import build
    from mfed.systems.regularisers import proximal_term
    from mfed.types import ClientEvaluation, ClientUpdate

    driver = build(cfg)  # the same specs, model factory, optimizer factory and strategy as mfed
    begin = time.perf_counter()  # as for mfed: from the built objects to the first round
    setup, strategy = driver.setup, driver.strategy
    torch.set_num_threads(psutil.cpu_count())
    data = {
        s.client_id: (
            shard(setup.dataset, s.train_indices, [setup.tasks[s.tasks[0]].target_key]),
            shard(setup.dataset, s.val_indices, [setup.tasks[s.tasks[0]].target_key]),
        )
        for s in driver.specs
    }
    models = {s.client_id: setup.model_factory([setup.tasks[s.tasks[0]]]) for s in driver.specs}
    state = strategy.init_state(driver.model)
    startup = time.perf_counter() - begin
    times, first_end = [], 0.0
    for round_idx in range(1, rounds + 1):
        start = time.perf_counter()
        updates = []
        for client_id in sample_clients(driver.client_ids, driver.fraction, driver.seed, round_idx):
            spec = next(s for s in driver.specs if s.client_id == client_id)
            task, model = setup.tasks[spec.tasks[0]], models[client_id]
            sent = {**state.get("global", {}), **state.get(f"task:{spec.tasks[0]}", {})}
            model.load_state_dict(sent, strict=False)
            prefix = f"decoders.{spec.tasks[0]}."
            reference = {k[len(prefix) :]: v.clone() for k, v in sent.items() if k.startswith(prefix)}
            decoder = model.decoders[spec.tasks[0]]
            optimizer = setup.optimizer(list(model.encoder.parameters()) + list(decoder.parameters()))
            seed = round_seed(spec.seed, round_idx)
            torch.manual_seed(seed)
            loader = DataLoader(data[client_id][0], batch_size=setup.config.batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(seed))  # fmt: skip
            model.train()
            for _ in range(setup.config.local_epochs):
                for batch in loader:
                    loss = task.loss_weight * task.loss(model(batch["image"], spec.tasks[0]), batch[task.target_key])
                    if strategy.prox_mu > 0:  # M-Fed's decoder term (the default run's strategy)
                        loss = loss + proximal_term(decoder.named_parameters(), reference, strategy.prox_mu)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
            updates.append(ClientUpdate(client_id, spec.tasks[0], len(data[client_id][0]), trained))  # type: ignore[arg-type]
        state = aggregate(strategy, state, updates)
        evaluations = []
        for spec in driver.specs:
            task, model = setup.tasks[spec.tasks[0]], models[spec.client_id]
            model.load_state_dict({**state.get("global", {}), **state.get(f"task:{spec.tasks[0]}", {})}, strict=False)
            model.eval()
            metrics = task.metrics()
            with torch.no_grad():
                for batch in DataLoader(data[spec.client_id][1], batch_size=setup.config.batch_size):
                    output = task.activate(model(batch["image"], spec.tasks[0]))
                    for metric in metrics.values():
                        metric.update(output, batch[task.target_key])
            states = {n: dict(m.metric_state) for n, m in metrics.items()}
            evaluations.append(ClientEvaluation(spec.client_id, spec.tasks[0], 0, {}, {spec.tasks[0]: states}))
        for task_name, task in setup.tasks.items():
            merge_evaluations(task, [e for e in evaluations if e.tasks[0] == task_name])
        times.append(time.perf_counter() - start)
        first_end = first_end or since_process_start()
    return startup, times, first_end


class RoundOneClock:
    """A run callback that notes when round 1 ended, in seconds since the process started."""

    def __init__(self) -> None:
        self.at = 0.0

    def on_start(self, driver) -> None:
        pass

    def on_round_end(self, driver, row) -> None:
        self.at = self.at or since_process_start()

    def on_end(self, driver) -> None:
        pass


def mfed_rounds(cfg, rounds: int) -> tuple[float, list[float], float]:
    """mfed's own driver on the configured backend: as :func:`plain_rounds`."""
    from mfed.run import build

    driver = build(cfg)
    clock = RoundOneClock()
    driver.callbacks = [clock]
    begin = time.perf_counter()
    history = driver.run()
    total = time.perf_counter() - begin
    per_round = [row["time/round_s"] for row in history]
    return total - sum(per_round), per_round, clock.at  # start-up plus shut-down


def child(system: str, rounds: int, overrides: list[str]) -> None:
    from mfed.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        backend = {"plain": "serial", "ray-joined": "ray"}.get(system, system)
        cfg = load_config([f"backend={backend}", "logger=none", f"federation.rounds={rounds}", f"out_dir={tmp}/run",
                           *overrides])  # fmt: skip
        startup, times, first_end = (plain_rounds if system == "plain" else mfed_rounds)(cfg, rounds)
    print("RESULT " + json.dumps({"startup": startup, "rounds": times, "first_end": first_end}), flush=True)


def run_sampled(command: list[str], every_s: float = 0.2, env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """Run ``command``, sampling its process tree's memory; return (exit code, stdout + stderr, peak bytes)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(every_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    return proc.returncode, out, peak[0]


# A process holding a Ray cluster until its stdin closes; `ray stop` would end every Ray on the machine.
HOLD_CLUSTER = """
import sys, ray
context = ray.init(address="local", num_cpus=int(sys.argv[1]), include_dashboard=False)
print(context.address_info["gcs_address"], flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def running_cluster() -> Iterator[dict[str, str]]:
    """A local Ray cluster started beforehand, as on a cluster or for a benchmark's later runs.

    Yields the environment that makes a run join it (``RAY_ADDRESS``); ends it (and only it) afterwards.
    """
    import os

    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CLUSTER, str(psutil.cpu_count())], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert holder.stdin is not None and holder.stdout is not None
    try:
        address = holder.stdout.readline().strip()
        if not address:
            raise SystemExit("ray-joined: the cluster did not start")
        yield {**env, "RAY_ADDRESS": address}
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)


def measure(system: str, rounds: int, overrides: list[str]) -> dict:
    """Run ``system`` in its own process, sampling its process tree's memory; return its figures.

    ``ray-joined`` is the Ray backend joining a cluster started before the process (its own
    processes, outside the sampled tree, are not in the peak memory).
    """
    command = [sys.executable, __file__, "--child", system, "--rounds", str(rounds), *overrides]
    with running_cluster() if system == "ray-joined" else contextlib.nullcontext(None) as env:
        code, out, peak_bytes = run_sampled(command, env=env)
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if code != 0 or line is None:
        raise SystemExit(f"{system} failed (exit {code}):\n{out[-2000:]}")
    result = json.loads(line[len("RESULT ") :])
    steady = result["rounds"][2:] or result["rounds"]
    return {"startup": result["startup"], "first_end": result["first_end"], "best": min(steady),
            "median": statistics.median(steady), "peak_gb": peak_bytes / 2**30}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--systems", default="plain,serial,ray,plain")
    parser.add_argument("--clients-per-actor", default="1")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    if args.child:
        child(args.child, args.rounds, overrides)
        return
    if args.rounds < 3:
        raise SystemExit("--rounds must be >= 3: two warm-up rounds, then steady ones")
    rows = []
    for system in args.systems.split(","):
        extra = [f"backend.clients_per_actor={args.clients_per_actor}"] if system.startswith("ray") else []
        rows.append((system, measure(system, args.rounds, [*overrides, *extra])))
        print(f"measured {system}: {rows[-1][1]}", file=sys.stderr, flush=True)
    plain = [r for s, r in rows if s == "plain"]
    ref = {k: min(r[k] for r in plain) for k in ("best", "median")} if plain else None
    print(f"overrides: {' '.join(overrides) or '(defaults)'}; clients per actor (ray): {args.clients_per_actor}")
    print("| system | start-up s | end of round 1 s | best round s | median round s | peak GB | best / plain | "
          "median / plain |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for system, r in rows:
        ratio = (f"{r['best'] / ref['best']:.2f}x", f"{r['median'] / ref['median']:.2f}x") if ref else ("-", "-")
        print(f"| {system} | {r['startup']:.1f} | {r['first_end']:.1f} | {r['best']:.2f} | {r['median']:.2f} | "
              f"{r['peak_gb']:.2f} | {ratio[0]} | {ratio[1]} |")  # fmt: skip


if __name__ == "__main__":
    main()
