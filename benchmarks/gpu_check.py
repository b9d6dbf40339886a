"""Clients sharing one GPU through fractional ``num_gpus``: per-actor GPU memory and round time against the CPU.

Runs the default workload (6 clients, 3 tasks) on ``data=shapes`` for a few rounds, three times,
each in its own process with its own embedded Ray:

- ``cpu``: ``backend.clients_per_actor=auto``, ``federation.accelerator=cpu``, no GPU.
- ``gpu-resident``: one actor per client, each asking ``1 / actors`` of the GPU.
- ``gpu-pooled``: ``backend.clients_per_actor=auto`` (one actor per CPU, at most one per client),
  each actor asking ``1 / actors`` of the GPU.

For every GPU actor it prints the peak GPU memory of its process as ``nvidia-smi`` reports it
(the CUDA context included; sampled every 0.5 s) beside torch's own peak allocation and
reservation in that process, the device each client's fit trained its parameters on (read in the
actor, before Lightning moves the module back to the CPU), and the median round (rounds 2 and
later) as a ratio to the CPU run's. On a machine without CUDA it prints one line and exits 0.

Usage:
    python benchmarks/gpu_check.py [--rounds 4] [--systems cpu,gpu-resident,gpu-pooled] [hydra overrides]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NO_CUDA = "no CUDA device: gpu_check did not run"
WORKLOAD = ("data=shapes", "data.test.length=100", "logger=none")
SYSTEMS = {  # system -> (clients_per_actor, accelerator, on the GPU)
    "cpu": ("auto", "cpu", False),
    "gpu-resident": ("1", "gpu", True),
    "gpu-pooled": ("auto", "gpu", True),
}
RECORD_DIR_ENV = "MFED_GPU_CHECK_DIR"


def record_fits() -> None:
    """Ray worker setup hook: every client fit in this worker writes where its parameters trained.

    Lightning moves the module back to the CPU when a fit ends, so the device is read in
    ``on_train_end``; torch's peak allocation and reservation of this process come with it.
    """
    import lightning.pytorch as pl
    import torch

    import mfed.federation.trainer as trainer_module

    original = trainer_module.quiet_trainer

    class Record(pl.Callback):
        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            devices = sorted({str(p.device) for p in pl_module.parameters()})
            cuda = torch.cuda.is_available()
            row = {
                "pid": os.getpid(),
                "devices": devices,
                "allocated_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
                "reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if cuda else 0.0,
            }
            with open(Path(os.environ[RECORD_DIR_ENV]) / f"{os.getpid()}.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def recording_trainer(*args: Any, **kwargs: Any) -> pl.Trainer:
        trainer = original(*args, **kwargs)
        trainer.callbacks.append(Record())
        return trainer

    trainer_module.quiet_trainer = recording_trainer  # client.py imports it at each fit


class GpuSampler:
    """Peak GPU memory per process, from ``nvidia-smi --query-compute-apps`` every ``every_s`` seconds."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.peak_mib: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
        while not self._stop.wait(every_s):
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            for line in out.splitlines():
                pid, _, used = line.partition(",")
                if pid.strip().isdigit() and used.strip().replace(".", "", 1).isdigit():
                    self.peak_mib[int(pid)] = max(self.peak_mib.get(int(pid), 0.0), float(used))

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child(system: str, rounds: int, overrides: list[str]) -> dict[str, Any]:
    """One system's run in this process: its own Ray with the recording hook; returns its figures."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # as the embedded Ray chooses (mfed/federation/local_ray.py)
    import ray

    from mfed.config import load_config
    from mfed.federation.ray_backend import actor_count
    from mfed.run import build

    per_actor, accelerator, on_gpu = SYSTEMS[system]
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "fits"
        records.mkdir()
        hook = {"worker_process_setup_hook": record_fits, "env_vars": {RECORD_DIR_ENV: str(records)}}
        ray.init(address="local", include_dashboard=False, log_to_driver=False, runtime_env=hook)
        cfg = load_config([*WORKLOAD, "backend=ray", f"federation.rounds={rounds}", f"out_dir={tmp}/run",
                           f"backend.clients_per_actor={per_actor}", f"federation.accelerator={accelerator}",
                           *overrides])  # fmt: skip
        driver = build(cfg)
        driver.callbacks = []
        n = actor_count(len(driver.client_ids), driver.backend.clients_per_actor, ray.cluster_resources()["CPU"])
        driver.backend.num_gpus = math.floor(100 / n) / 100 if on_gpu else 0.0  # the actors share one GPU
        with GpuSampler() if on_gpu else _NoSampler() as sampler:
            history = driver.run()
        ray.shutdown()
        fits = [json.loads(line) for f in records.glob("*.jsonl") for line in f.read_text().splitlines()]
    rounds_s = [row["time/round_s"] for row in history]
    return {"actors": n, "gpu_fraction": driver.backend.num_gpus, "rounds": rounds_s, "fits": fits,
            "smi_mib": {str(k): v for k, v in sampler.peak_mib.items()}}  # fmt: skip


class _NoSampler(GpuSampler):
    def __enter__(self) -> GpuSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def measure(system: str, rounds: int, overrides: list[str]) -> dict[str, Any]:
    """Run ``system`` in its own process (its own Ray and CUDA contexts); return its figures."""
    command = [sys.executable, __file__, "--child", system, "--rounds", str(rounds), *overrides]
    proc = subprocess.run(command, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{system} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def report(system: str, r: dict[str, Any], cpu_median: float | None) -> list[str]:
    """Lines for one system: its round time, where its fits trained, and each actor's GPU memory."""
    steady = r["rounds"][1:] or r["rounds"]
    median = statistics.median(steady)
    ratio = f"{median / cpu_median:.2f}x the cpu run" if cpu_median else "-"
    devices = sorted({d for fit in r["fits"] for d in fit["devices"]})
    lines = [f"{system}: {r['actors']} actors, {r['gpu_fraction']:g} GPU each; median round {median:.2f} s "
             f"({ratio}); {len(r['fits'])} fits trained on {', '.join(devices) or 'nothing recorded'}"]  # fmt: skip
    if system.startswith("gpu"):
        peaks: dict[int, dict[str, float]] = {}
        for fit in r["fits"]:
            peak = peaks.setdefault(fit["pid"], {"allocated_mib": 0.0, "reserved_mib": 0.0})
            for key in peak:
                peak[key] = max(peak[key], fit[key])
        for pid, peak in sorted(peaks.items()):
            smi = r["smi_mib"].get(str(pid))
            smi_text = f"{smi:.0f} MiB" if smi is not None else "pid not listed (a container's own pids?)"
            lines.append(f"  actor pid {pid}: nvidia-smi {smi_text}; torch peak allocated "
                         f"{peak['allocated_mib']:.0f} MiB, reserved {peak['reserved_mib']:.0f} MiB")  # fmt: skip
        others = {p: m for p, m in r["smi_mib"].items() if int(p) not in peaks}
        if others:
            lines.append(f"  other GPU processes (driver, Ray's): {others} MiB")
        if any(d.startswith("cpu") for d in devices):
            lines.append("  WARNING: some fits trained on the CPU")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check (or print one line without CUDA); return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--child", choices=tuple(SYSTEMS), help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.rounds, overrides)), flush=True)
        return 0
    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    systems = args.systems.split(",")
    if unknown := [s for s in systems if s not in SYSTEMS]:
        raise SystemExit(f"--systems: unknown {unknown}; choose from {list(SYSTEMS)}")
    print(f"GPU: {torch.cuda.get_device_name(0)}; overrides: {' '.join(overrides) or '(defaults)'}", flush=True)
    results = {s: measure(s, args.rounds, overrides) for s in systems}
    cpu = results.get("cpu")
    cpu_median = statistics.median(cpu["rounds"][1:] or cpu["rounds"]) if cpu else None
    for system, r in results.items():
        print("\n".join(report(system, r, cpu_median)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
