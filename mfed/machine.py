"""Where a run was made: the CPU, the library versions and the threads each client used.

Two runs with the same seed and settings give the same numbers on one machine, not across
machines: float reductions differ with the CPU's vector units and the libraries' kernels, and the
difference grows over rounds (a rerun of ``benchmark=hetero_quick`` on another CPU matched the
round-1 losses to 5 digits and moved final test metrics by up to 2.3). Every ``summary.json``
and benchmark ``results.json`` records :func:`machine` so a reader knows which runs are exactly
comparable.

The figures are the driver's machine; on the embedded local Ray the clients run there too. On a
cluster the clients may run elsewhere (``ray status`` lists the nodes).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "lightning", "numpy", "torchmetrics", "ray")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; ``platform.processor()`` elsewhere; ``unknown``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine(torch_threads: int | None = None, accelerator: str | None = None) -> dict[str, Any]:
    """The driver's CPU, cores, OS, Python, the libraries that set the numbers, and the clients' threads.

    Args:
        torch_threads: Each client's intra-op threads (``federation.torch_threads``).
        accelerator: ``federation.accelerator`` as configured.

    """
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        **{name: _version(name) for name in LIBRARIES},
        "torch_threads": torch_threads,
        "accelerator": accelerator,
    }


def describe(info: dict[str, Any]) -> str:
    """One line: ``<cpu> (<cores> cores), torch 2.13.0, lightning 2.6.6, numpy 2.4.6; 1 thread per client``."""
    libraries = ", ".join(f"{name} {info[name]}" for name in LIBRARIES if info.get(name))
    threads = info.get("torch_threads")
    per_client = f"; {threads} thread{'s' if threads != 1 else ''} per client" if threads else ""
    return f"{info.get('cpu', 'unknown CPU')} ({info.get('cores')} cores), {libraries}{per_client}"


def machines_line(runs: Sequence[Mapping[str, Any]]) -> str:
    """A report's line on where its runs were made: one machine, several, or not recorded."""
    seen = list(dict.fromkeys(describe(r["machine"]) for r in runs if r.get("machine")))
    if not seen:
        return "Machine: not recorded (runs made before summary.json recorded it)."
    if len(seen) == 1:
        return f"Machine: {seen[0]}."
    return f"Machines ({len(seen)}; runs on different machines are not bit-for-bit comparable): {'; '.join(seen)}."
