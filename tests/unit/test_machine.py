"""Where a run was made: the driver's CPU and library versions, in summary.json and a benchmark's report."""

import json
import os
from importlib import metadata
from pathlib import Path

import numpy
import torch

from mfed.machine import cpu_model, describe, machine, machines_line


def test_the_record_names_the_cpu_the_libraries_and_the_clients_threads():
    info = machine(torch_threads=2, accelerator="auto")
    assert info["torch"] == torch.__version__ and info["numpy"] == numpy.__version__
    assert info["lightning"] == metadata.version("lightning") and info["cores"] == os.cpu_count()
    assert info["torch_threads"] == 2 and info["accelerator"] == "auto"
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    assert info["cpu"] == (names[0] if names else cpu_model()) and info["cpu"]
    json.dumps(info)  # plain values only
    assert describe(info).startswith(f"{info['cpu']} ({os.cpu_count()} cores), torch {torch.__version__}")
    assert describe(info).endswith("; 2 threads per client")


def test_a_report_says_whether_its_runs_share_a_machine():
    a = machine(torch_threads=1)
    b = {**a, "cpu": "Other CPU"}
    assert machines_line([{"machine": a}, {"machine": a}]) == f"Machine: {describe(a)}."
    two = machines_line([{"machine": a}, {"machine": b}, {}])
    assert two.startswith("Machines (2; runs on different machines are not bit-for-bit comparable)")
    assert "Other CPU" in two
    assert machines_line([{}, {"machine": None}]).startswith("Machine: not recorded")
