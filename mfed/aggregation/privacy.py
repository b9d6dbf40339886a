"""Client-level differential privacy for any averaging strategy: DP-FedAvg (McMahan et al., ICLR 2018).

A combine stage wrapped around the strategy's or the defences' combine (config group ``privacy``;
Flower's ``DifferentialPrivacyServerSideFixedClipping`` and its client-side and adaptive variants,
and TFF's ``DifferentiallyPrivateFactory``, are the precedent). Each round:

1. **Joint clipping.** A client's update of the protected parts (the encoder by default; the
   decoders optionally), *over every scope the strategy routes it into*, is clipped to L2 norm
   ``C`` (``clip_norm``) as one vector: ``w_k - w_sent`` for each protected tensor of each of its
   routed parts. Whatever the strategy routes (M-Fed's encoder and decoder, per-task FedAvg's
   encoder once per task a client holds, ``mfed_ca``'s encoder into its tasks' means as well as
   the global one), replacing one client moves the concatenated sums by at most ``2 C``, the
   sensitivity the accountant assumes. With ``clipping: client`` each client clips the protected
   tensors it sends, jointly, before sending; the server clips the routed contributions again (a
   no-op for an honest client whose tensors each fold into one scope).
2. Each scope's clipped updates are summed and divided by a *fixed* denominator ``m_s``: the
   expected number of the round's sampled clients that fold into that scope (``fraction * N``
   for M-Fed's encoder, the task's share for its decoder), so no client's weight depends on the
   others.
3. Gaussian noise of standard deviation ``z C`` on every coordinate of each scope's sum, i.e.
   ``z C / m_s`` on its mean (``noise_multiplier`` z): the released sums together are the
   Gaussian mechanism with sensitivity ``2 C`` and noise ``z C``.

**Secret noise.** The noise comes from a 128-bit seed drawn from the operating system's secure
source (:mod:`secrets`) when the run starts, kept only in the ``server`` scope (the checkpoint's
server-only state, never sent, logged or summarised), so a resumed run adds the same noise and
nobody who reads the run's config, logs or results can regenerate it. Each round's noise is a
PCG64 stream keyed by the whole seed and the round (:func:`noise_generator`).
``reproducible_noise: true`` derives the seed from the run seed instead (research that must replay
the noise); the guarantee then holds only while the run seed is secret, and the run says so.

**Adaptive clipping** (``adaptive: true``, Andrew et al., NeurIPS 2021, as TFF and Flower):
``C <- C exp(-clip_lr (b - target_quantile))``, where ``b`` is the noised share of the round's
clients whose update was within ``C`` (noise ``sigma_b`` on the count, ``count_noise``; default
``m / 20`` for ``m`` sampled clients). The count is a second release: the updates' multiplier is
lowered to ``z_d = (z^-2 - (2 sigma_b)^-2)^(-1/2)`` so the pair costs what ``z`` alone would, which
needs ``z < 2 sigma_b``. With client-side clipping each client reports whether its update was
within the bound (:attr:`~mfed.types.ClientUpdate.within_bound`): the server sees only clipped
updates. ``C`` and the noise seed live in the server scope (namespace ``privacy``).

Unprotected parts and integer counters fold as the strategy says. A protected part with
BatchNorm's running statistics is refused (:mod:`mfed.plan`): they would be noised like weights
and wreck predictions. Accounting: :mod:`mfed.aggregation.accounting`.

Released outside the guarantee: the merged per-task metrics (``val/``, ``test/``, ``train/``),
computed from the clients' data without noise; which clients were sampled, failed or were
rejected (the norm-ratio screen then bounds an update by the norm of the part it was sent, public,
not by other clients' norms, and names no norm). Each client's update norm, losses and metrics and
the diagnostics computed from un-noised updates are left out of the run's logs unless
``release_client_metrics: true``.
"""

from __future__ import annotations

import math
import secrets
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from mfed.aggregation import accounting
from mfed.aggregation.contract import FOLDS, MEANS, PARTS, UPDATES, Declaration, bounded
from mfed.aggregation.stages import Combine, Combiner, Parts, RoundContext
from mfed.models.multitask import DECODERS_PREFIX, ENCODER_PREFIX
from mfed.types import ClientUpdate, ServerState, State, server_scope

PART_PREFIXES = {"encoder": ENCODER_PREFIX, "decoder": DECODERS_PREFIX}
NAMESPACE = "privacy"  # its keys in the server scope: privacy/clip_norm, privacy/noise_seed
CLIP_KEY, SEED_KEY = "clip_norm", "noise_seed"
SEED_WORDS = 4  # the noise seed: 4 x 32 = 128 bits


@dataclass
class DifferentialPrivacy:
    """Client-level DP with joint clipping, a fixed denominator and secret Gaussian noise (see the module doc).

    Args:
        noise_multiplier: z; the noise's standard deviation is ``z * clip_norm / m_s``. ``None``:
            the smallest z that keeps epsilon within ``target_epsilon`` after the last round.
        clip_norm: C, the bound on each client's whole protected update over every scope it folds
            into (the initial one when adaptive).
        delta: The delta at which epsilon is reported.
        target_epsilon: The budget: a run whose epsilon would exceed it before its last round is
            refused before it starts. ``None``: no budget.
        parts: What is protected: ``encoder`` and/or ``decoder``.
        clipping: ``server`` (the server clips what it receives) or ``client`` (each client clips
            its update before sending it; Flower's client-side fixed clipping).
        adaptive: Adapt ``clip_norm`` toward the ``target_quantile`` of the update norms.
        target_quantile: Adaptive clipping's target share of updates within the bound.
        clip_lr: Adaptive clipping's geometric learning rate.
        count_noise: Adaptive clipping's noise on the count of updates within the bound (sigma_b);
            ``None``: ``m / 20`` (Andrew et al.'s default) for ``m`` sampled clients.
        release_client_metrics: Log per-client norms, losses and metrics, and the diagnostics.
        reproducible_noise: Derive the noise seed from the run seed (replayable noise; the
            guarantee then holds only while the seed is secret) instead of the secure source.

    """

    noise_multiplier: float | None = 1.0
    clip_norm: float = 1.0
    delta: float = 1e-5
    target_epsilon: float | None = None
    parts: Sequence[str] = ("encoder",)
    clipping: str = "server"
    adaptive: bool = False
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    count_noise: float | None = None
    release_client_metrics: bool = False
    reproducible_noise: bool = False
    expected: dict[str, float] = field(default_factory=dict, repr=False)
    clients: int = field(default=0, repr=False)
    sampled: int = field(default=0, repr=False)
    seed: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.parts = tuple(self.parts)
        bad = [p for p in self.parts if p not in PART_PREFIXES]
        if not self.parts or bad:
            raise ValueError(f"privacy.parts must hold encoder and/or decoder, got {list(self.parts)}")
        if self.noise_multiplier is None and self.target_epsilon is None:
            raise ValueError("privacy.noise_multiplier=null needs privacy.target_epsilon (the budget to calibrate to)")
        if self.noise_multiplier is not None and not self.noise_multiplier >= 0:
            raise ValueError(f"privacy.noise_multiplier must be >= 0 or null, got {self.noise_multiplier}")
        if not self.clip_norm > 0:
            raise ValueError(f"privacy.clip_norm must be > 0, got {self.clip_norm}")
        if not 0 < self.delta < 1:
            raise ValueError(f"privacy.delta must lie in (0, 1), got {self.delta}")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ValueError(f"privacy.target_epsilon must be > 0 or null, got {self.target_epsilon}")
        if self.clipping not in ("server", "client"):
            raise ValueError(f"privacy.clipping must be server or client, got {self.clipping!r}")
        if not 0 < self.target_quantile < 1 or not self.clip_lr > 0:
            raise ValueError(
                f"privacy.target_quantile must lie in (0, 1) and privacy.clip_lr be > 0, got "
                f"{self.target_quantile} and {self.clip_lr}"
            )
        if self.count_noise is not None and not self.count_noise > 0:
            raise ValueError(f"privacy.count_noise must be > 0 or null, got {self.count_noise}")

    def bind(
        self, members: Mapping[str, Mapping[str, int]], clients: int, fraction: float, rounds: int, seed: int = 0
    ) -> None:
        """Fix the denominators and the noise for a federation; refuse a budget it would exceed.

        Args:
            members: Per scope, the clients of each kind that fold into it (``Strategy.members``).
            clients: The federation's number of clients.
            fraction: Share of clients sampled per round.
            rounds: The run's rounds.
            seed: The run seed (the noise seed's source only with ``reproducible_noise``).

        Raises:
            ValueError: The budget runs out before the last round (naming the round), cannot be
                met, or adaptive clipping's count takes more than the budget.

        """
        self.clients, self.seed = clients, seed
        self.sampled = max(1, round(fraction * clients))
        self.expected = {scope: sum(kinds.values()) * self.sampled / clients for scope, kinds in members.items()}
        if self.noise_multiplier is None:
            assert self.target_epsilon is not None
            self.noise_multiplier = accounting.calibrate(
                self.target_epsilon, self.clients, self.sampled, rounds, self.delta
            )  # fmt: skip
        elif self.target_epsilon is not None:
            spent = accounting.exhausted_at(
                self.target_epsilon, self.noise_multiplier, self.clients, self.sampled, rounds, self.delta
            )  # fmt: skip
            if spent is not None:
                eps = self.epsilon(spent)
                raise ValueError(
                    f"privacy.target_epsilon={self.target_epsilon} runs out in round {spent} of {rounds} (epsilon "
                    f"{eps:.3g} at delta {self.delta:g}): raise privacy.noise_multiplier, or lower federation.rounds "
                    "or federation.fraction"
                )
        if self.adaptive and not self.noise_multiplier < 2 * self.count_std:
            raise ValueError(
                f"privacy.adaptive needs noise multiplier < 2 x count noise (z < 2 sigma_b, Andrew et al.: the count "
                f"takes part of the budget), got z={self.noise_multiplier:g} and sigma_b={self.count_std:.3g}"
                f"{'' if self.count_noise is not None else ' (sampled clients / 20)'}: set privacy.count_noise above "
                f"{self.noise_multiplier / 2:.3g}, or privacy.adaptive=false"
            )

    def epsilon(self, rounds: int) -> float:
        """Epsilon at ``delta`` after ``rounds`` rounds."""
        assert self.noise_multiplier is not None and self.clients, "bind() first"
        return accounting.epsilon(self.noise_multiplier, self.clients, self.sampled, rounds, self.delta)

    def statement(self, rounds: int) -> str:
        """The guarantee after ``rounds`` rounds and what it rests on (said by the console, summary.json, report.md)."""
        source = (
            "noise reproducible from the run seed (privacy.reproducible_noise=true): the guarantee holds only while "
            "the seed is secret"
            if self.reproducible_noise
            else "noise from a secret seed kept only in the checkpoint"
        )
        spent = f"epsilon {self.epsilon(rounds):.3g} at delta {self.delta:g} after round {rounds}"
        return f"client-level DP: {spent}; {source}"

    def protected(self, key: str) -> bool:
        """Whether the floating tensor ``key`` belongs to a protected part."""
        return any(self.protected_by(p, key) for p in self.parts)

    def protected_by(self, part: str, key: str) -> bool:
        """Whether ``key`` belongs to ``part`` and ``part`` is protected."""
        return part in self.parts and key.startswith(PART_PREFIXES[part])

    def current_clip(self, state: Mapping[str, State]) -> float:
        """The bound this round: the adaptive one kept in the server scope, else ``clip_norm``."""
        kept = state.get(server_scope(), {}).get(f"{NAMESPACE}/{CLIP_KEY}")
        return float(kept) if self.adaptive and kept is not None else self.clip_norm

    @property
    def count_std(self) -> float:
        """Adaptive clipping's noise on the count of updates within the bound (sigma_b)."""
        return self.count_noise if self.count_noise is not None else self.sampled / 20

    @property
    def update_multiplier(self) -> float:
        """The updates' noise multiplier: z, or with adaptive clipping ``z_d = (z^-2 - (2 sigma_b)^-2)^(-1/2)``.

        The count's release (sensitivity 1, noise ``sigma_b``) and the sums' (sensitivity ``2 C``,
        noise ``z_d C``) compose to the Gaussian mechanism of multiplier ``z`` under replace-one.
        """
        z = self.noise_multiplier
        assert z is not None, "bind() first"
        if not self.adaptive or z == 0:
            return z
        return float((z**-2 - (2 * self.count_std) ** -2) ** -0.5)

    def noise_std(self, scope: str, clip: float) -> float:
        """Standard deviation of the noise on each coordinate of ``scope``'s mean update: ``z_d C / m_s``."""
        return self.update_multiplier * clip / self.expected[scope]

    def drowned(self, state: ServerState, rounds: int) -> list[str]:
        """Why a protected scope will learn little: its noise outweighs what clipped updates can move, over the run.

        Each round the noise on scope ``s``'s mean has norm about ``z_d C sqrt(d_s) / m_s`` (``d_s``
        protected coordinates), while the clipped updates move it by at most ``C``; over ``rounds``
        rounds the updates add up linearly and the noise as the square root, so the scope learns
        little where ``z_d sqrt(d_s) / (m_s sqrt(rounds)) > 1``. One line per such scope.
        """
        lines = []
        for scope, tensors in state.items():
            if scope not in self.expected or rounds < 1:
                continue
            size = sum(v.numel() for k, v in tensors.items() if v.is_floating_point() and self.protected(k))
            spread = self.update_multiplier * math.sqrt(size)  # the noise's norm on the sum, in units of C
            ratio = spread / self.expected[scope]
            if size and ratio / math.sqrt(rounds) > 1:
                needed = math.ceil(spread / math.sqrt(rounds))
                lines.append(
                    f"privacy: the noise on scope {scope}'s mean has norm about {ratio:.3g} C each round, against at "
                    f"most C from the clipped updates; over {rounds} rounds it still outweighs them "
                    f"{ratio / math.sqrt(rounds):.3g} to 1, so it will learn little: client-level DP pays off "
                    f"with about {needed} clients per round in it (now {self.expected[scope]:.3g}), or more rounds"
                )
        return lines

    def noise_seed(self, kept: State) -> int:
        """The run's noise seed: the one kept in the server scope, else a new one (see the module doc)."""
        if SEED_KEY in kept:
            return seed_of(kept[SEED_KEY].tolist())
        if self.reproducible_noise:
            return seed_of(
                np.random.SeedSequence([self.seed, zlib.crc32(b"privacy noise")]).generate_state(SEED_WORDS).tolist()
            )
        return secrets.randbits(32 * SEED_WORDS)

    def declaration(self) -> Declaration:
        """Needs routed parts of a combine and each protected part's contribution bounded once; gives a noised mean."""
        needs = {FOLDS, PARTS, *(bounded(p) for p in self.parts), *([UPDATES] if self.clipping == "server" else [])}
        return Declaration("privacy=dp", needs=frozenset(needs), gives=frozenset({MEANS}))

    def around(self, inner: Combine) -> PrivateCombine:
        """The combine stage: this mechanism for the protected tensors, ``inner`` for the rest."""
        return PrivateCombine(self, inner)


def noise_generator(seed: int, round_idx: int) -> np.random.Generator:
    """Round ``round_idx``'s noise: a PCG64 stream keyed by the whole 128-bit ``seed`` and the round."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(round_idx,))))


def seed_words(seed: int) -> Tensor:
    """``seed`` as the server scope keeps it: its 32-bit words, least significant first."""
    return torch.tensor([(seed >> (32 * i)) & 0xFFFFFFFF for i in range(SEED_WORDS)], dtype=torch.int64)


def seed_of(words: Sequence[int]) -> int:
    """The seed whose 32-bit words (least significant first) are ``words``: :func:`seed_words`' inverse."""
    return sum(int(w) << (32 * i) for i, w in enumerate(words))


def no_privacy() -> None:
    """No differential privacy (``privacy=none``, the default): the strategy folds as it says."""
    return None


class PrivateCombine(Combine):
    """The DP mechanism as a combine: protected tensors clipped jointly, summed over a fixed denominator, noised.

    Args:
        privacy: The mechanism's settings.
        inner: The combine of everything it does not protect (integer counters, unprotected parts).

    """

    def __init__(self, privacy: DifferentialPrivacy, inner: Combine) -> None:
        self.privacy, self.inner = privacy, inner

    def declaration(self) -> Declaration:
        """The mechanism's (:meth:`DifferentialPrivacy.declaration`)."""
        return self.privacy.declaration()

    def open(self, ctx: RoundContext) -> Combiner:
        """A round's sums beside the inner combine's round."""
        return _PrivateRound(self.privacy, ctx, self.inner.open(ctx))


class _PrivateRound(Combiner):
    """One round's sums of jointly clipped updates of the protected parts, per scope, and their noised means."""

    def __init__(self, privacy: DifferentialPrivacy, ctx: RoundContext, inner: Combiner) -> None:
        self.privacy, self.ctx, self.inner = privacy, ctx, inner
        self.clip = privacy.current_clip(ctx.state)
        self.seed = privacy.noise_seed(ctx.kept(NAMESPACE))
        self.sums: dict[str, dict[str, Tensor]] = {}
        self.noised: set[str] = set()  # scopes whose sums came noised (secure aggregation's distributed noise)
        self.within = 0.0

    def add(self, update: ClientUpdate, weight: float, parts: Parts) -> None:
        """Clip the update's protected tensors over all its scopes as one vector into the sums; the rest: inner."""
        deltas: list[tuple[str, str, Tensor]] = []
        rest: Parts = []
        for scope, part in parts:
            sent, other = self.ctx.state[scope], {}
            for key, value in part.items():
                if value.is_floating_point() and self.privacy.protected(key):
                    deltas.append((scope, key, value.to(torch.float64) - sent[key].to(torch.float64)))
                else:
                    other[key] = value
            rest += [(scope, other)] if other else []
        self.inner.add(update, weight, rest)
        if not deltas:
            return
        norm = math.sqrt(sum(float(d.square().sum()) for _, _, d in deltas))
        scale = min(1.0, self.clip / norm) if norm > 0 else 1.0
        for scope, key, delta in deltas:
            sums = self.sums.setdefault(scope, {})
            sums[key] = sums[key] + delta * scale if key in sums else delta * scale
        client_says = self.privacy.clipping == "client"  # the server sees only clipped updates: the client tells
        self.within += float(bool(update.within_bound) if client_says else norm <= self.clip)

    def add_sums(self, sums: ServerState, within: float, noised: bool = False) -> None:
        """Fold in per-scope sums of changes the clients clipped jointly themselves, and how many were within the bound.

        Secure aggregation's: the server sees neither an update nor its norm, only these sums;
        ``noised``: the clients added the noise (distributed), so the result adds none to them.
        """
        if noised:
            self.noised.update(sums)
        for scope, tensors in sums.items():
            into = self.sums.setdefault(scope, {})
            for key, total in tensors.items():
                into[key] = into[key] + total if key in into else total.to(torch.float64)
        self.within += within

    def result(self) -> ServerState:
        """Each protected scope's noised mean update applied to the sent state, over the inner combine's result."""
        out = self.inner.result()
        noise = noise_generator(self.seed, self.ctx.round)
        for scope, sums in sorted(self.sums.items()):  # drawn in a fixed order, however the sums were folded in
            denominator, std = self.privacy.expected[scope], self.privacy.noise_std(scope, self.clip)
            noised: State = {}
            for key, total in sorted(sums.items()):
                sent = self.ctx.state[scope][key]
                drawn = torch.from_numpy(noise.standard_normal(tuple(total.shape))) * std
                if scope in self.noised:
                    drawn = torch.zeros_like(drawn)
                noised[key] = (sent.to(torch.float64) + total / denominator + drawn).to(sent.dtype)
            out[scope] = {**self.ctx.state.get(scope, {}), **out.get(scope, {}), **noised}
        self.ctx.metrics["dp_clip_norm"] = self.clip
        kept: State = {SEED_KEY: seed_words(self.seed)}
        if self.privacy.adaptive:
            count = self.within + float(noise.standard_normal()) * self.privacy.count_std
            share = count / self.privacy.sampled
            new_clip = self.clip * math.exp(-self.privacy.clip_lr * (share - self.privacy.target_quantile))
            kept[CLIP_KEY] = torch.tensor(new_clip, dtype=torch.float64)
        self.ctx.keep(NAMESPACE, kept)
        return out
