"""MultiTaskModel: one shared encoder + one decoder per task.

Parameter names are the contract with aggregation: ``encoder.*`` is shared by every client,
``decoders.<task>.*`` by the clients of that task.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from mfed.tasks.base import Task

ENCODER_PREFIX = "encoder."


def decoder_prefix(task: str) -> str:
    """Return the state-dict prefix of ``task``'s decoder."""
    return f"decoders.{task}."


DECODERS_PREFIX = "decoders."


def part_prefixes(parts: Iterable[str], tasks: Iterable[str]) -> list[str]:
    """State-dict prefixes of a strategy's parts for a client holding ``tasks``.

    ``encoder`` is the shared encoder; ``decoder`` is every decoder the client holds (one per task).
    """
    tasks = list(tasks)
    prefixes: list[str] = []
    for part in parts:
        prefixes += [ENCODER_PREFIX] if part == "encoder" else [decoder_prefix(t) for t in tasks]
    return prefixes


class MultiTaskModel(nn.Module):
    """A shared encoder with a ``nn.ModuleDict`` of decoders keyed by task name.

    Args:
        encoder: Maps ``(B, C, H, W)`` images to features.
        decoders: ``{task: decoder}``; a decoder maps ``(features, (H, W))`` to a prediction.

    """

    def __init__(self, encoder: nn.Module, decoders: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not decoders:
            raise ValueError("MultiTaskModel needs at least one decoder, got none")
        self.encoder = encoder
        self.decoders = nn.ModuleDict(dict(decoders))

    @property
    def tasks(self) -> tuple[str, ...]:
        """Names of the tasks this model has a decoder for."""
        return tuple(self.decoders.keys())

    def forward(self, x: Tensor, task: str) -> Tensor:
        """(B, C, H, W) image -> ``task``'s raw prediction at the same resolution."""
        return self.predict(x, [task])[task]

    def predict(self, x: Tensor, tasks: Iterable[str]) -> dict[str, Tensor]:
        """(B, C, H, W) image -> each of ``tasks``' raw prediction, the encoder run once."""
        tasks = list(tasks)
        missing = [t for t in tasks if t not in self.decoders]
        if missing:
            raise KeyError(f"model has no decoder for tasks {missing}; it has {list(self.tasks)}")
        features = self.encoder(x)
        return {t: self.decoders[t](features, x.shape[-2:]) for t in tasks}


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    # Each component is initialised from its own seed, so every process that builds the same
    # component (driver, any client) gets bit-identical weights without sending them.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def component_seed(seed: int, component: str) -> int:
    """A stable per-component seed (independent of Python's hash randomisation)."""
    return (seed * 1_000_003 + zlib.crc32(component.encode())) % (2**31)


def build_model(
    encoder: Callable[[], nn.Module],
    decoder: Callable[..., nn.Module],
    tasks: Iterable[Task],
    seed: int,
) -> MultiTaskModel:
    """Build an encoder and one decoder per task, each deterministically initialised.

    Args:
        encoder: Zero-argument factory (a Hydra partial) returning the encoder; it must expose
            ``out_channels``.
        decoder: Factory taking ``in_channels`` and ``out_channels``, for every task that names
            no decoder of its own (``Task.decoder``).
        tasks: The tasks to give a decoder.
        seed: Run seed.

    """
    enc = _seeded(component_seed(seed, "encoder"), encoder)
    in_channels = getattr(enc, "out_channels", None)
    if not isinstance(in_channels, int):
        raise ValueError(f"encoder {type(enc).__name__} must expose an integer out_channels")
    decoders = {
        t.name: _seeded(
            component_seed(seed, f"decoder:{t.name}"),
            functools.partial(t.decoder or decoder, in_channels=in_channels, out_channels=t.out_channels),
        )
        for t in tasks
    }
    return MultiTaskModel(enc, decoders)


class ModelFactory:
    """Picklable ``tasks -> MultiTaskModel`` builder: the same weights in every process.

    Args:
        encoder: Zero-argument encoder factory (Hydra partial).
        decoder: Decoder factory taking ``in_channels`` and ``out_channels`` (Hydra partial), for
            the tasks that name no decoder of their own.
        seed: Run seed.

    """

    def __init__(self, encoder: Callable[[], nn.Module], decoder: Callable[..., nn.Module], seed: int) -> None:
        self.encoder, self.decoder, self.seed = encoder, decoder, seed

    def __call__(self, tasks: Iterable[Task]) -> MultiTaskModel:
        """Build the model with one decoder per task in ``tasks``."""
        return build_model(self.encoder, self.decoder, tasks, self.seed)
