"""Client-level differential privacy for any averaging strategy: DP-FedAvg (McMahan et al., ICLR 2018).

Wraps a strategy's fold as the defences do (config group ``privacy``; Flower's
``DifferentialPrivacyServerSideFixedClipping`` and its client-side and adaptive variants are the
precedent). For each protected part (the encoder by default; the decoders optionally), in each
scope it folds into:

1. each client's update ``w_k - w_sent`` is clipped to L2 norm ``C`` (``clip_norm``), on the
   server or, with ``clipping: client``, by the client before it sends (the server clips again:
   a no-op for an honest client);
2. the clipped updates are summed and divided by a *fixed* denominator ``m_s``: the expected number
   of the round's sampled clients that fold into that scope (``fraction * N`` for M-Fed's encoder),
   so no client's weight depends on the others and one client moves the mean by at most
   ``2C / m_s`` (replace-one);
3. Gaussian noise of standard deviation ``z * C / m_s`` (``noise_multiplier`` z) is added to every
   coordinate, drawn from the round's generator seeded from (run seed, round): a resumed run adds
   the same noise.

Unprotected parts and integer counters (BatchNorm's ``num_batches_tracked``) fold as the strategy
says. BatchNorm's running variances are noised like every protected tensor and then clamped at 0
(post-processing, which costs no privacy): a negative variance would turn predictions into NaN.
In a fold (:mod:`mfed.aggregation.fold`) the mechanism is a combine stage wrapped around the
strategy's or the defences' combine (:class:`PrivateCombine`): protected tensors go through it,
the rest through the inner combine. Accounting: :mod:`mfed.aggregation.accounting`. With
``adaptive: true`` the bound follows
Andrew et al. (NeurIPS 2021): ``C <- C * exp(-clip_lr * (b - target_quantile))`` where ``b`` is the
noised share of the round's clients whose update was within ``C`` (noise ``sigma_b = m/20``, their
default), the updates' noise multiplier lowered to ``(z^-2 - (2 sigma_b / m)^-2)^(-1/2)`` so the
round's total cost stays that of ``z``; ``C`` lives in the server-only scope (namespace ``privacy``).

Releases that bypass the mechanism (each client's update norm, losses and metrics, and the
diagnostics computed from un-noised updates) are left out of the run's logs unless
``release_client_metrics: true``. The merged per-task metrics (``val/``, ``test/``, ``train/``)
are still logged: they are computed from the clients' data without noise, outside the guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mfed.aggregation import accounting
from mfed.aggregation.contract import FOLDS, MEANS, PARTS, UPDATES, Declaration, bounded
from mfed.aggregation.robust import clip_with_norm
from mfed.aggregation.stages import Combine, Combiner, Parts, RoundContext
from mfed.models.multitask import DECODERS_PREFIX, ENCODER_PREFIX
from mfed.types import ClientUpdate, ServerState, State, server_scope

PART_PREFIXES = {"encoder": ENCODER_PREFIX, "decoder": DECODERS_PREFIX}
NAMESPACE = "privacy"  # its keys in the server scope: privacy/clip_norm
CLIP_KEY = "clip_norm"


@dataclass
class DifferentialPrivacy:
    """Client-level DP with clipping, a fixed denominator and Gaussian noise (see the module doc).

    Args:
        noise_multiplier: z; the noise's standard deviation is ``z * clip_norm / m_s``. ``None``:
            the smallest z that keeps epsilon within ``target_epsilon`` after the last round.
        clip_norm: C, the bound on each client's update of each protected part (the initial one
            when adaptive).
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
    expected: dict[str, float] = field(default_factory=dict, repr=False)
    clients: int = field(default=0, repr=False)
    sampled: int = field(default=0, repr=False)

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

    def bind(self, members: Mapping[str, Mapping[str, int]], clients: int, fraction: float, rounds: int) -> None:
        """Fix the denominators and the noise for a federation; refuse a budget it would exceed.

        Args:
            members: Per scope, the clients of each kind that fold into it (``Strategy.members``).
            clients: The federation's number of clients.
            fraction: Share of clients sampled per round.
            rounds: The run's rounds.

        Raises:
            ValueError: The budget runs out before the last round (naming the round), or cannot be met.

        """
        self.clients = clients
        self.sampled = max(1, round(fraction * clients))
        self.expected = {scope: sum(kinds.values()) * self.sampled / clients for scope, kinds in members.items()}
        if self.count_noise is not None and not self.count_noise > 0:
            raise ValueError(f"privacy.count_noise must be > 0 or null, got {self.count_noise}")
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
        if self.adaptive and not self.noise_multiplier > 1 / (2 * self.count_std):
            raise ValueError(
                "privacy.adaptive needs privacy.noise_multiplier > 1 / (2 * count_noise) = "
                f"{1 / (2 * self.count_std):.3g} "
                f"(the count's noise takes part of the budget): raise privacy.count_noise (now {self.count_std:.3g}) "
                "or the noise multiplier"
            )

    def epsilon(self, rounds: int) -> float:
        """Epsilon at ``delta`` after ``rounds`` rounds."""
        assert self.noise_multiplier is not None and self.clients, "bind() first"
        return accounting.epsilon(self.noise_multiplier, self.clients, self.sampled, rounds, self.delta)

    def protected(self, key: str) -> bool:
        """Whether the floating tensor ``key`` belongs to a protected part."""
        return key.startswith(tuple(PART_PREFIXES[p] for p in self.parts))

    def current_clip(self, state: Mapping[str, State]) -> float:
        """The bound this round: the adaptive one kept in the server scope, else ``clip_norm``."""
        kept = state.get(server_scope(), {}).get(f"{NAMESPACE}/{CLIP_KEY}")
        return float(kept) if self.adaptive and kept is not None else self.clip_norm

    @property
    def count_std(self) -> float:
        """Adaptive clipping's noise on the count of updates within the bound (sigma_b)."""
        return self.count_noise if self.count_noise is not None else self.sampled / 20

    def noise_std(self, scope: str, clip: float) -> float:
        """Standard deviation of the noise added to each coordinate of ``scope``'s mean update.

        Adaptive clipping spends part of the budget on the count: the updates' multiplier becomes
        ``(z^-2 - (2 sigma_b)^-2)^(-1/2)``, so that the pair of releases costs what ``z`` alone would.
        """
        assert self.noise_multiplier is not None
        z = self.noise_multiplier
        if self.adaptive:
            z = (z**-2 - (2 * self.count_std) ** -2) ** -0.5
        return z * clip / self.expected[scope]

    def declaration(self) -> Declaration:
        """Needs routed parts of a combine and each protected part's contribution bounded once; gives a noised mean."""
        needs = {FOLDS, PARTS, *(bounded(p) for p in self.parts), *([UPDATES] if self.clipping == "server" else [])}
        return Declaration("privacy=dp", needs=frozenset(needs), gives=frozenset({MEANS}))

    def around(self, inner: Combine) -> PrivateCombine:
        """The combine stage: this mechanism for the protected tensors, ``inner`` for the rest."""
        return PrivateCombine(self, inner)


def no_privacy() -> None:
    """No differential privacy (``privacy=none``, the default): the strategy folds as it says."""
    return None


class PrivateCombine(Combine):
    """The DP mechanism as a combine: protected tensors clipped, summed over a fixed denominator and noised.

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
    """One round's sums of clipped updates of the protected parts, per scope, and their noised means."""

    def __init__(self, privacy: DifferentialPrivacy, ctx: RoundContext, inner: Combiner) -> None:
        self.privacy, self.ctx, self.inner = privacy, ctx, inner
        self.clip = privacy.current_clip(ctx.state)
        self.sums: dict[str, dict[str, Tensor]] = {}
        self.within = 0.0

    def _split(self, part: State) -> tuple[State, State]:
        """``part``'s protected floating tensors, and the rest (folded by the inner combine)."""
        protected = {k: v for k, v in part.items() if v.is_floating_point() and self.privacy.protected(k)}
        return protected, {k: v for k, v in part.items() if k not in protected}

    def add(self, update: ClientUpdate, weight: float, parts: Parts) -> None:
        """Clip the update's protected contributions per scope into the sums; the rest to the inner combine."""
        protected, rest = [], []
        for scope, part in parts:
            secret, other = self._split(part)
            protected += [(scope, secret)] if secret else []
            rest += [(scope, other)] if other else []
        self.inner.add(update, weight, rest)
        within = True
        for scope, tensors in protected:
            state = self.ctx.state[scope]
            clipped, norm = clip_with_norm(tensors, state, self.clip)
            within &= norm <= self.clip
            sums = self.sums.setdefault(
                scope, {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in clipped.items()}
            )
            for key, value in clipped.items():
                sums[key] += value.to(torch.float64) - state[key].to(torch.float64)
        if protected:
            self.within += float(within)

    def result(self) -> ServerState:
        """Each protected scope's noised mean update applied to the sent state, over the inner combine's result."""
        out = self.inner.result()
        rng = self.ctx.rng
        for scope, sums in self.sums.items():
            denominator, std = self.privacy.expected[scope], self.privacy.noise_std(scope, self.clip)
            noised: State = {}
            for key, total in sums.items():
                noise = torch.randn(total.shape, generator=rng, dtype=torch.float64) * std
                sent = self.ctx.state[scope][key]
                value = sent.to(torch.float64) + total / denominator + noise
                if key.endswith("running_var"):  # post-processing (free under DP): a variance is never negative
                    value = value.clamp(min=0.0)
                noised[key] = value.to(sent.dtype)
            out[scope] = {**self.ctx.state.get(scope, {}), **out.get(scope, {}), **noised}
        self.ctx.metrics["dp_clip_norm"] = self.clip
        if self.privacy.adaptive:
            count = self.within + float(torch.randn((), generator=rng, dtype=torch.float64)) * self.privacy.count_std
            share = count / self.privacy.sampled
            new_clip = self.clip * math.exp(-self.privacy.clip_lr * (share - self.privacy.target_quantile))
            self.ctx.keep(NAMESPACE, {CLIP_KEY: torch.tensor(new_clip, dtype=torch.float64)})
        return out
