"""Where the Hydra configs live (a module of its own: :mod:`mfed.config` and :mod:`mfed.schema` both need it)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MFED_CONFIG_DIR"


def config_dir() -> Path:
    """The configs folder: ``$MFED_CONFIG_DIR``, else ``configs/`` beside the package."""
    env = os.environ.get(ENV_VAR)
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "configs"
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(
            f"no config.yaml in {path}: install mfed from its repository (pip install -e .) "
            f"or set {ENV_VAR} to the repository's configs/ folder"
        )
    return path
