"""Finding and composing the Hydra configs (no ``@hydra.main``: the caller keeps its cwd)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

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


def load_config(overrides: Sequence[str] = (), name: str = "config") -> DictConfig:
    """Compose ``name`` with Hydra command-line style ``overrides``."""
    if not OmegaConf.has_resolver("now"):
        OmegaConf.register_new_resolver("now", lambda fmt: datetime.now().strftime(fmt), use_cache=True)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))
