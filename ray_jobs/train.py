"""Entry point for ``ray job submit -- python ray_jobs/train.py [overrides]``.

A thin shim over :func:`mfed.run.run`: inside a Ray job the driver joins the cluster it was
submitted to (RAY_ADDRESS is set by the job server); outside one it starts an embedded Ray.
"""

import sys
from pathlib import Path

try:
    import mfed  # noqa: F401
except ImportError:  # the job's working dir is the repository, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mfed.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
