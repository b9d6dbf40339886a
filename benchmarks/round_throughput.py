"""Seconds per round: the serial backend against the Ray backend, same config, one run each.

Usage: python benchmarks/round_throughput.py [--rounds 3] [hydra overrides...]
Both runs use logger=none and a temporary out_dir; prints start-up time, mean seconds per round
(after round 1) and the serial/Ray ratio. On a 2-core machine the Ray backend runs clients
concurrently with one torch thread each.
"""

import argparse
import tempfile
import time

from mfed.config import load_config
from mfed.run import build


def measure(backend: str, rounds: int, overrides: list[str]) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            [f"backend={backend}", "logger=none", f"federation.rounds={rounds}", f"out_dir={tmp}", *overrides]
        )
        driver = build(cfg)
        driver.callbacks = []  # quiet
        start = time.perf_counter()
        history = driver.run()
        total = time.perf_counter() - start
    per_round = [row["time/round_s"] for row in history]
    return total - sum(per_round), per_round


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args, overrides = parser.parse_known_args()
    results = {b: measure(b, args.rounds, overrides) for b in ("serial", "ray")}
    print(f"{'backend':8s} {'start-up + shutdown':>20s} {'s/round (rounds 2+)':>20s}")
    steady = {}
    for backend, (startup, rounds) in results.items():
        steady[backend] = sum(rounds[1:]) / max(1, len(rounds) - 1)
        print(f"{backend:8s} {startup:19.1f}s {steady[backend]:19.1f}s")
    print(f"serial / ray per round: {steady['serial'] / steady['ray']:.2f}x")


if __name__ == "__main__":
    main()
