"""Entry point for ``ray job submit -- python ray_jobs/benchmark.py benchmark=<name> [overrides]``.

A thin shim over :func:`mfed.sweeps.benchmark.run_benchmark`: runs go to the cluster the job joins.
"""

import sys
from pathlib import Path

try:
    import mfed  # noqa: F401
except ImportError:  # the job's working dir is the repository, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mfed.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
