"""Tasks: one file each, built from ``configs/task/<name>.yaml`` by Hydra."""

from mfed.tasks.base import Task

__all__ = ["Task"]
