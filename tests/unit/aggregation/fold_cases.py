"""Synthetic rounds for every strategy config: the fold's inputs, independent of how the fold is built.

A tiny model (a conv encoder with BatchNorm, so statistics and an integer counter travel; two-layer
decoders, so cross-task FedAvg has a soup) and six clients holding one, two or three tasks. Each
round, every client's update is what it was sent plus a perturbation drawn from (client, round):
only what the strategy folds is sent, and the whole model is kept as private state. The same
cases were folded by the code before the fold became stages (``fold_16ae703.json``), so a test can
check that every strategy still gives the same state.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import numpy as np
import torch
from torch import nn

from mfed.aggregation.functional import merge_scopes, select
from mfed.models.multitask import MultiTaskModel
from mfed.types import ClientSpec, ClientUpdate, ServerState, State, scopes_of

CLIENTS = (
    ("c0", ("seg",), 30),
    ("c1", ("seg",), 10),
    ("c2", ("depth",), 20),
    ("c3", ("edges",), 25),
    ("c4", ("seg", "depth"), 15),
    ("c5", ("seg", "depth", "edges"), 40),
)
ROUNDS = 2
SEED = 0

STRATEGIES = (
    "centralised", "centralised_epochs", "ditto", "fedavg", "fedavg_all", "fedhca2", "fedprox", "fedrep", "local",
    "mfed", "mfed_ca", "mfed_frozen_encoder", "mfed_mu0", "mfed_private_decoders",
)  # fmt: skip
DEFENCES: dict[str, list[str]] = {
    "none": [],
    "clip": ["defences.clip_norm=0.5"],
    "median": ["defences.robust=median"],
    "trimmed": ["defences.robust=trimmed_mean", "defences.trim_fraction=0.2"],
}
PRIVACY: dict[str, list[str]] = {
    "none": [],
    "dp": ["privacy=dp", "privacy.clip_norm=0.5"],
    "dp_both": ["privacy=dp", "privacy.clip_norm=0.5", "privacy.parts=[encoder,decoder]"],
}
STOCHASTIC = ("fedhca2", "mfed_ca")  # a solver over inner products: compared to 1e-9, not bit for bit


def model() -> MultiTaskModel:
    """The tiny model every case starts from (seeded)."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    decoders = {
        t: nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, c, 1)) for t, c in (("seg", 3), ("depth", 1), ("edges", 1))
    }
    return MultiTaskModel(encoder, decoders)


def specs() -> list[ClientSpec]:
    """The six clients."""
    return [ClientSpec(cid, tasks, tuple(range(n)), (), i) for i, (cid, tasks, n) in enumerate(CLIENTS)]


def round_rng(round_idx: int) -> torch.Generator:
    """The fold's generator for a round, as the driver seeds it (run seed, round, purpose ``aggregate``)."""
    entropy = np.random.SeedSequence([SEED, round_idx, zlib.crc32(b"aggregate")]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(entropy))


def _perturbed(start: State, client: int, round_idx: int) -> State:
    gen = torch.Generator().manual_seed(1000 * round_idx + client)
    out: State = {}
    for key, value in start.items():
        if value.is_floating_point():
            scale = 0.5 if client == 5 else 0.1  # c5 moves far: clipping and robust rules have work to do
            out[key] = value + scale * torch.randn(value.shape, generator=gen, dtype=value.dtype)
        else:
            out[key] = value + round_idx
    return out


def updates(targets: Any, state: ServerState, full: State, round_idx: int) -> list[ClientUpdate]:
    """Each client's update: what the strategy folds of it (``targets``), and its whole model as private state."""
    out = []
    for i, (cid, tasks, n) in enumerate(CLIENTS):
        own = {k: v for k, v in full.items() if k.startswith(("encoder.", *(f"decoders.{t}." for t in tasks)))}
        start = {**own, **{k: v for k, v in merge_scopes(state, scopes_of(cid, tasks)).items() if k in own}}
        trained = _perturbed(start, i, round_idx)
        sent = select(trained, [p for _, prefixes in targets(tasks) for p in prefixes])
        out.append(ClientUpdate(cid, tasks, n, sent, private=trained))
    return out


def digest(state: ServerState) -> dict[str, list[Any]]:
    """Per scope: the sha256 of its tensors (sorted by key, with dtypes), their float64 sum and sum of squares."""
    out: dict[str, list[Any]] = {}
    for scope in sorted(state):
        sha, total, squares = hashlib.sha256(), 0.0, 0.0
        for key in sorted(state[scope]):
            t = state[scope][key].detach().contiguous()
            sha.update(key.encode() + str(t.dtype).encode() + t.numpy().tobytes())
            total += float(t.to(torch.float64).sum())
            squares += float(t.to(torch.float64).square().sum())
        out[scope] = [sha.hexdigest()[:16], total, squares]
    return out
