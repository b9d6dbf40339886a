"""benchmarks/gpu_check.py on a machine without CUDA: one line, exit 0 (it has not run on a GPU yet)."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_prints_one_line_and_exits_0(capsys, monkeypatch):
    # Prepare
    gpu_check = load_script()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # (as on this machine; also on a GPU one)

    def refuse(*args, **kwargs):
        raise AssertionError("a system was run without CUDA")

    monkeypatch.setattr(gpu_check, "measure", refuse)
    # Execute
    code = gpu_check.main([])
    # Assert
    out = capsys.readouterr()
    assert code == 0
    assert out.out == "no CUDA device: gpu_check did not run\n" and out.err == ""
