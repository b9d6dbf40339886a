"""The round loop: sample, send, train, aggregate, evaluate, log, repeat."""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any, Protocol

import numpy as np
import torch

from mfed.aggregation.base import Plan, Strategy
from mfed.aggregation.fold import Fold, Pipeline
from mfed.aggregation.functional import check_same_model
from mfed.federation.advice import clip_stalls
from mfed.federation.backends import Backend, ClientSetup
from mfed.federation.divergence import blame, divergence, nonfinite_metrics
from mfed.federation.plateau import Plateau
from mfed.federation.sampling import EVALUATION, in_order, required, sample_clients
from mfed.federation.summary import EvalTally, TestTally, TrainTally, UpdateTally
from mfed.federation.validation import ExpectedLayouts, Fault, Screen, nonfinite_scopes
from mfed.interrupts import StopRequested
from mfed.models.multitask import MultiTaskModel
from mfed.secure.protocol import Aborted
from mfed.secure.rounds import SecureRound
from mfed.tasks.base import Task
from mfed.types import ClientFailure, ClientSpec, ServerState, client_scope, personal_scope

log = logging.getLogger(__name__)

Row = dict[str, float]
FAULT_KINDS = ("rejected", "failed", "timeout", "restarted", "nonfinite")


class RoundFailed(RuntimeError):
    """A round could not produce a trustworthy state; the state of the round before is kept.

    Attributes:
        round: The round that failed.

    """

    def __init__(self, round_idx: int, message: str) -> None:
        super().__init__(f"round {round_idx}: {message}")
        self.round = round_idx


class RunCallback(Protocol):
    """Something that watches the run: console, history file, W&B, checkpoints."""

    def on_start(self, driver: Driver) -> None:
        """Called once before the clients start."""
        ...

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Called after every round with that round's metrics."""
        ...

    def on_end(self, driver: Driver) -> None:
        """Called once after the last round (also after a failure)."""
        ...


WITHHELD = ("client/", "diag/", "agg/clipped")
"""A row's entries computed from un-noised updates: withheld under DP (:attr:`Driver.private`)."""


def round_generator(seed: int, round_idx: int, purpose: str) -> torch.Generator:
    """A generator for ``purpose`` (the fold, the plan) in a round, from (run seed, round): a resume draws the same."""
    entropy = np.random.SeedSequence([seed, round_idx, zlib.crc32(purpose.encode())]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(entropy))


def _listed(faults: Sequence[Fault], previous: Row | None = None) -> str:
    """The round's faults in a line; when every update diverged, who moved the state they started from.

    Args:
        faults: The round's faults.
        previous: The row of the round before (its clients' update norms); ``None`` in round 1.

    """
    if not faults:
        return ""
    diverged = all("non-finite" in f.reason or "norm_ratio" in f.reason for f in faults)
    hint = ""
    if diverged:
        hint = f" (training diverged: {blame(previous) if previous else 'lower optimizer.lr'})"
    clients = ", ".join(f"{f.client_id} {f.kind}" for f in faults)
    return f"{hint}; {clients} (first: {faults[0].client_id}: {faults[0].reason})"


FINGERPRINT_KEYS = {  # the settings each part of a checkpoint's fingerprint comes from
    "clients": "federation.clients_per_task, federation.groups and data.*",
    "seed": "seed",
    "fold": "aggregation.*, defences.*, privacy.* and server_optimizer.*",
    "fraction": "federation.fraction",
}


@dataclass
class Driver:
    """Runs a federation of ``specs`` with the ``fold`` of its strategy on ``backend``.

    Attributes:
        fold: The round's fold: the strategy and the stages composed with it.
        backend: Where clients run.
        tasks: Task objects by name.
        specs: One spec per client.
        setup: What every client is built from.
        model: The initial full model (every task's decoder), source of the initial state.
        rounds: Number of rounds (>= 1).
        fraction: Share of clients sampled per round, in (0, 1].
        eval_every: Evaluate on the clients' validation splits every this many rounds (and after
            the last); the global test set, when configured, is scored after the last round.
        eval_fraction: Share of clients whose validation split an evaluation round scores, in
            (0, 1]: a sample drawn from the seed and the round, apart from training's
            (``eval/clients`` says how many).
        seed: Run seed (client sampling).
        min_clients: Accepted updates a round needs to be aggregated: a count, or a fraction in
            (0, 1) of the sampled clients (rounded up). Fewer because clients failed retry the
            round; fewer after the retries, or because updates were rejected, stop the run.
        max_retries: Retries of a round short of ``min_clients`` because clients failed.
        plateau: Stop before ``rounds`` when validation plateaus (:mod:`mfed.federation.plateau`);
            the test sets are then scored on that round's model. ``None``: every round.
        callbacks: Watchers of the run.
        settings: The configured values that define the run (``mfed.run.run_settings``): a resume
            must match every one of them (part of the checkpoint's fingerprint).
        faults: Every rejected update so far (round, client, reason).
        meta: Small facts callbacks keep across a resume (e.g. the W&B run id), and the run's
            ``warnings`` about its settings (:meth:`warn`); checkpointed.
        status: ``running``, then ``completed``, ``diverged`` (every round ran, but see
            :mod:`mfed.federation.divergence`), ``failed`` or ``interrupted``.
        error: What ended a run that did not complete.

    """

    fold: Pipeline
    backend: Backend
    tasks: Mapping[str, Task]
    specs: Sequence[ClientSpec]
    setup: ClientSetup
    model: MultiTaskModel
    rounds: int
    fraction: float = 1.0
    eval_every: int = 1
    eval_fraction: float = 1.0
    seed: int = 0
    min_clients: float = 1
    max_retries: int = 2
    plateau: Plateau | None = None
    callbacks: Sequence[RunCallback] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    history: list[Row] = field(default_factory=list)
    state: ServerState = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"federation.rounds must be >= 1, got {self.rounds}")
        if self.eval_every < 1:
            raise ValueError(f"federation.eval_every must be >= 1, got {self.eval_every}")
        sample_clients(["x"], self.fraction, 0, 0)  # validates fraction now, not in round 1
        sample_clients(["x"], self.eval_fraction, 0, 0, key="federation.eval_fraction")
        if not self.specs:
            raise ValueError("a federation needs at least one client")
        required(self.min_clients, max(1, round(self.fraction * len(self.specs))))  # validates it now
        unknown = sorted({t for s in self.specs for t in s.tasks} - set(self.tasks))
        if unknown:
            raise ValueError(f"clients have tasks {unknown} with no task config; tasks: {sorted(self.tasks)}")

    @property
    def strategy(self) -> Strategy:
        """The strategy: the fold's route, and what its clients do each round."""
        return self.fold.strategy

    @property
    def client_ids(self) -> list[str]:
        """Every client's id, in spec order."""
        return [s.client_id for s in self.specs]

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed by this driver: derived from the settings, never hand-written."""
        return {
            "settings": dict(self.settings),
            "fold": repr(self.fold.settings()),
            "clients": self.client_ids,
            "seed": self.seed,
            "fraction": self.fraction,
        }

    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Continue from a checkpoint: its server state and history; the next round is the one after.

        Raises:
            ValueError: The checkpoint comes from a different setup or is already at or past ``rounds``.

        """
        saved = checkpoint.get("fingerprint", {})
        if "settings" not in saved:
            raise ValueError(
                "resume: the checkpoint was written by an earlier mfed, whose fingerprint lacks the run's settings; "
                "finish it with that version, or start a new run"
            )
        ours, theirs = self.fingerprint()["settings"], saved["settings"]
        for key in dict.fromkeys([*theirs, *ours]):
            if theirs.get(key) != ours.get(key):
                raise ValueError(
                    f"resume: the checkpoint's {key} is {theirs.get(key)!r}, this run's is {ours.get(key)!r}; it must "
                    "stay as the run had it: leave it off, or start a new run"
                )
        for key, value in self.fingerprint().items():
            if saved.get(key) != value:
                raise ValueError(
                    f"resume: the checkpoint's {key} is {saved.get(key)!r}, this run's is {value!r}; "
                    f"{FINGERPRINT_KEYS.get(key, 'the config')} must stay as the run had them: leave them off, or "
                    "start a new run"
                )
        done = int(checkpoint["round"])
        if done >= self.rounds:
            raise ValueError(f"resume: the checkpoint has {done} rounds; raise federation.rounds above {done}")
        state = checkpoint["state"]  # complete for every strategy: clients keep nothing the server does not hold
        check_same_model(state, self.strategy.init_state(self.model))
        broken = nonfinite_scopes(state)
        if broken:
            raise ValueError(f"resume: the checkpoint's state has non-finite values in {broken}; it cannot go on")
        self.state, self.history = dict(state), list(checkpoint["history"])
        self.faults = [Fault(**f) for f in checkpoint.get("faults", [])]
        self.meta = dict(checkpoint.get("meta", {}))

    def run(self) -> list[Row]:
        """Run the remaining rounds and return the whole history (one row per round).

        Whatever ends the run, every clean-up step runs (clients released, each callback's
        ``on_end``), each on its own, and the original error is raised; ``status`` and ``error``
        say how it ended.
        """
        if not self.history:
            self.state = self.strategy.init_state(self.model)
        self.status, self.error = "running", None
        self.meta.pop("stopped", None)  # a resumed run that had plateaued decides again from its history
        try:
            for cb in self.callbacks:
                cb.on_start(self)
            self.backend.start(self.specs, self.setup)
            for round_idx in range(len(self.history) + 1, self.rounds + 1):
                row = self.run_round(round_idx)
                self.history.append(row)
                for cb in self.callbacks:
                    cb.on_round_end(self, row)
                if self.meta.get("stopped"):  # the validation plateaued (federation.patience)
                    break
            reason = divergence(self.history, self.tasks)
            self.status, self.error = ("diverged", reason) if reason else ("completed", None)
        except (KeyboardInterrupt, StopRequested) as err:
            self.status, self.error = "interrupted", str(err) or "interrupted by Ctrl-C"
            raise
        except BaseException as err:
            self.status, self.error = "failed", f"{type(err).__name__}: {err}"
            raise
        finally:
            self._clean_up()
        return self.history

    def _clean_up(self) -> None:
        steps: list[tuple[str, Callable[[], None]]] = [("releasing the clients", self.backend.shutdown)]
        steps += [(f"{type(cb).__name__}.on_end", partial(cb.on_end, self)) for cb in self.callbacks]
        for what, step in steps:
            try:
                step()
            except OSError as err:  # a full disk, a read-only folder: one line naming what was not written
                log.error("clean-up step failed: %s: %s", what, err)
            except Exception:  # one failing step must neither hide the run's error nor skip the others
                log.exception("clean-up step failed: %s", what)

    @property
    def private(self) -> bool:
        """Under DP without ``release_client_metrics``: figures from un-noised updates are neither logged nor kept."""
        return self.fold.privacy is not None and not self.fold.privacy.release_client_metrics

    @cached_property
    def trainer(self) -> Any:
        """Where the model trains when a strategy does not train it on the clients (``None``: on the clients)."""
        return self.strategy.trainer(self.specs, self.setup, self.seed)

    @cached_property
    def expected(self) -> ExpectedLayouts:
        """What each client must send and keep, given its steps."""
        return ExpectedLayouts(self.model.state_dict(), self.setup.weighting)

    def run_round(self, round_idx: int) -> Row:
        """One round: train the sampled clients, screen and fold in their updates, maybe evaluate everyone."""
        start = time.perf_counter()
        state, row, faults = self._train(round_idx)
        broken = nonfinite_scopes(state)
        if broken:
            raise RoundFailed(round_idx, f"the aggregated state has non-finite values in {broken}; it was not kept")
        self.state = state
        row = {"round": float(round_idx), **row}
        if round_idx % self.eval_every == 0 or round_idx == self.rounds:
            row.update(self._evaluate(round_idx, "val", EvalTally(self.tasks), faults))
        last = round_idx == self.rounds
        if not last and self.plateau is not None and self.plateau.reached([*self.history, row], self.tasks):
            self.meta["stopped"] = {"round": round_idx, "reason": self.plateau.describe()}
            log.warning("stopping after round %d of %d: %s", round_idx, self.rounds, self.plateau.describe())
            last = True
        if last and self.setup.test_dataset is not None:
            row.update(self._evaluate(round_idx, "test", TestTally(), faults))
        if last and any(s.local_test_indices for s in self.specs):
            row.update(self._evaluate(round_idx, "local_test", TestTally("local_test"), faults))
        privacy = self.fold.privacy
        if privacy is not None:
            row["privacy/epsilon"] = privacy.epsilon(round_idx)
            if self.private:  # these bypass the mechanism: released only on request
                row = {k: v for k, v in row.items() if not k.startswith(WITHHELD)}
        self.faults.extend(faults)
        row.update({f"fault/{kind}": float(sum(f.kind == kind for f in faults)) for kind in FAULT_KINDS})
        row.update({f"fault/{f.client_id}/{f.kind}": 1.0 for f in faults})
        row["time/round_s"] = time.perf_counter() - start
        log.info("round %d/%d: %d clients trained in %.1fs", round_idx, self.rounds, row["comm/clients"],
                 row["time/round_s"])  # fmt: skip
        return row

    def _train(self, round_idx: int) -> tuple[ServerState, Row, list[Fault]]:
        """The next state, the round's training entries and its faults.

        A strategy with a trainer of its own (the centralised reference) trains here on the pooled data instead.
        Updates are screened and folded in as they arrive, in the order the clients were
        sampled. A round short of ``min_clients`` because clients failed is retried (up to
        ``max_retries`` times); one short because updates were rejected fails (a retry would
        compute the same).
        """
        if self.trainer is not None:
            return (*self.trainer.fit(self.state, round_idx), [])
        sampled = sample_clients(self.client_ids, self.fraction, self.seed, round_idx)
        by_id = {c: self.spec_of[c] for c in sampled}
        plan = self.plan(round_idx, sampled)
        layouts = {c: self.expected.of(spec, plan[c]) for c, spec in by_id.items()}
        needed = required(self.min_clients, len(sampled))
        for attempt in range(self.max_retries + 1):
            medians, ratio = self.meta.get("norm_medians", {}), self.fold.defences.norm_ratio
            screen = Screen(by_id, layouts, round_idx, self.state, medians, ratio, private=self.private)
            tally = TrainTally(self.state)
            updates = UpdateTally(self.state)
            fold = self.fold.round(self.state, round_idx, round_generator(self.seed, round_idx, "aggregate"))
            faults: list[Fault] = []
            secure = self._secure_round(round_idx, [by_id[c] for c in sampled], plan)
            if secure is None:
                outcomes = self.backend.fit(sampled, self.state, round_idx, plan)
            else:
                outcomes = self.backend.fit(sampled, self.state, round_idx, plan, secure=secure.instructions())
            trained = []
            for outcome in self._collect(outcomes, sampled, round_idx, faults):
                fault = screen(outcome) if secure is None else None  # a secure update's tensors stay on its client
                if fault is None:
                    if secure is None:
                        updates.add(outcome)
                    fold.add(outcome)
                    tally.add(outcome)
                    trained.append(outcome.client_id)
                else:
                    faults.append(fault)
                    log.warning("round %d: %s rejected: %s", round_idx, fault.client_id, fault.reason)
            if fold.count >= needed:
                secured = self._run_secure(secure, fold, trained, round_idx, last=attempt == self.max_retries)
                if secured is None:
                    continue
                if not self.private and secure is None:  # checkpointed: a resumed run screens the same
                    self.meta["norm_medians"] = screen.medians()
                state, metrics = fold.result()
                metrics.update(secured)
                if round_idx == 1:  # a bound below every update shows at once
                    self.warn(1, "defences.clip_norm", self._clip_stalls(metrics, fold.parts, screen))
                row = {**tally.row(), **updates.row(), **{f"agg/{k}": v for k, v in metrics.items()}}
                for way in ("up", "down") if secure is not None else ():  # the protocol's messages are the upload
                    row[f"comm/bytes_{way}"] += metrics[f"secure_bytes_{way}"]
                return state, row, faults
            short = f"{fold.count} of {len(sampled)} updates accepted, fewer than federation.min_clients="
            short += str(self.min_clients) + (f" ({needed} clients)" if self.min_clients < 1 else "")
            if all(f.kind in ("rejected", "restarted") for f in faults) or attempt == self.max_retries:
                raise RoundFailed(round_idx, short + _listed(faults, self.history[-1] if self.history else None))
            log.warning("round %d: %s; retrying the round (%d of %d)", round_idx, short, attempt + 1, self.max_retries)
        raise AssertionError("unreachable")

    def _secure_round(self, round_idx: int, specs: Sequence[ClientSpec], plan: Plan) -> SecureRound | None:
        """The round's secure aggregation (its graphs drawn from (run seed, round)); ``None`` when it is off."""
        if self.fold.secure is None:
            return None
        seed = int(torch.randint(2**62, (1,), generator=round_generator(self.seed, round_idx, "secure")))
        return SecureRound(self.fold.secure, self.strategy, self.state, specs, plan, round_idx, seed, self.fold.privacy)

    def _run_secure(
        self, secure: SecureRound | None, fold: Fold, trained: Sequence[str], round_idx: int, last: bool
    ) -> dict[str, float] | None:
        """Fold in each scope's securely aggregated mean; its metrics. ``None``: aborted, retry the round.

        Raises:
            RoundFailed: Aborted on the last attempt (the state of the round before is kept).

        """
        if secure is None:
            return {}
        try:
            secured = secure.run(self.backend.secure, trained)
        except Aborted as err:
            if last:
                raise RoundFailed(round_idx, f"secure aggregation aborted: {err}") from None
            log.warning("round %d: secure aggregation aborted (%s); retrying the round", round_idx, err)
            return None
        for scope in secured.skipped:
            log.warning("round %d: secure aggregation: scope %s has one client left; kept as it was", round_idx, scope)
        fold.add_secured(secured)
        return secured.metrics

    def _clip_stalls(self, metrics: Mapping[str, float], parts: int, screen: Screen) -> str | None:
        """Why ``defences.clip_norm`` stalls learning, when the round clipped all of its ``parts``; else ``None``."""
        norms = None if self.private else screen.norms  # under DP the advice names no client's norm
        return clip_stalls(self.fold.defences.clip_norm, metrics.get("clipped", 0.0), parts, norms)

    def warn(self, round_idx: int, setting: str, message: str | None) -> None:
        """Log and keep a warning about ``setting`` (see :mod:`mfed.federation.advice`); ``None``: nothing to say."""
        if message is None:
            return
        log.warning("round %d: %s", round_idx, message)
        self.meta.setdefault("warnings", []).append({"round": round_idx, "setting": setting, "message": message})

    @staticmethod
    def _collect(outcomes: Iterable[Any], order: Sequence[str], round_idx: int, faults: list[Fault]) -> Iterator[Any]:
        """The clients' messages in ``order`` as they arrive; failures go to ``faults`` (and the log).

        A client that sent nothing at all (a backend's bug) is a ``failed`` fault, not a silent gap.
        """
        heard: set[str] = set()
        for outcome in in_order(outcomes, order):
            if isinstance(outcome, ClientFailure):
                faults.append(Fault(round_idx, outcome.client_id, outcome.kind, outcome.reason))
                log.warning("round %d: %s %s: %s", round_idx, outcome.client_id, outcome.kind, outcome.reason)
                if outcome.note:
                    continue
            else:
                yield outcome
            heard.add(outcome.client_id)
        faults += [Fault(round_idx, c, "failed", "the backend sent nothing for it") for c in order if c not in heard]

    def plan(self, round_idx: int, client_ids: Sequence[str]) -> Plan:
        """What the strategy asks of each of ``client_ids`` in round ``round_idx`` (its ``configure_round``)."""
        specs = [self.spec_of[c] for c in client_ids]
        rng = round_generator(self.seed, round_idx, "plan")
        plan = self.strategy.configure_round(round_idx, self.state, specs, rng)
        unplanned = [c for c in client_ids if not plan.get(c)]
        if unplanned:
            raise RoundFailed(round_idx, f"{type(self.strategy).__name__}.configure_round gave no steps to {unplanned}")
        privacy = self.fold.privacy
        if privacy is not None and privacy.clipping == "client":  # each client bounds what it sends itself
            clip = (tuple(privacy.parts), privacy.current_clip(self.state))
            plan = {c: tuple(dataclasses.replace(s, clip=clip) if s.sends else s for s in ss) for c, ss in plan.items()}
        return plan

    @cached_property
    def spec_of(self) -> dict[str, ClientSpec]:
        """Every client's spec by id."""
        return {s.client_id: s for s in self.specs}

    def test_scorers(self) -> dict[str, list[str]]:
        """Who scores the global test set, for whom: ``{scorer: clients it stands for}``.

        Clients of one kind (the same tasks) load the same scopes and so hold the same model when
        none has a scope of its own (M-Fed, FedAvg): they would score the test set bit for bit
        alike, so one does it for all of them. Where clients keep or are sent their own models
        (Local, personalised strategies), each scores its own.
        """
        scorers: dict[str, list[str]] = {}
        kinds: dict[str, list[str]] = {}
        for spec in self.specs:
            kinds.setdefault(spec.kind, []).append(spec.client_id)
        for ids in kinds.values():
            if any(client_scope(c) in self.state or personal_scope(c) in self.state for c in ids):
                scorers.update({c: [c] for c in ids})
            else:
                scorers[ids[0]] = ids
        return scorers

    def _evaluate(self, round_idx: int, split: str, tally: EvalTally | TestTally, faults: list[Fault]) -> Row:
        """Score ``split`` and return its row entries; failures join ``faults`` (reasons prefixed with the split)."""
        if split == "test":
            scorers = self.test_scorers()
        elif split == "local_test":  # each client's own data: no two score the same
            scorers = {s.client_id: [s.client_id] for s in self.specs if s.local_test_indices}
        else:
            scored = sample_clients(self.client_ids, self.eval_fraction, self.seed, round_idx, EVALUATION)
            scorers = {c: [c] for c in scored}
        failed: list[Fault] = []
        outcomes = self.backend.evaluate(list(scorers), self.state, split=split)
        for evaluation in self._collect(outcomes, list(scorers), round_idx, failed):
            bad = nonfinite_metrics(evaluation)
            for client in scorers.get(evaluation.client_id, [evaluation.client_id]):
                tally.add(dataclasses.replace(evaluation, client_id=client))
                if bad:  # still merged (a NaN shows in the task's figure), and named here
                    reason = f"{split} metrics not finite: {', '.join(bad)}"
                    faults.append(Fault(round_idx, client, "nonfinite", reason))
                    log.warning("round %d: %s %s", round_idx, client, reason)
        for f in failed:
            stands_for = scorers.get(f.client_id, [f.client_id])
            reason = f"{split} evaluation: {f.reason}"
            faults += [dataclasses.replace(f, client_id=c, reason=reason) for c in stands_for]
        row = tally.row()
        if split == "val":
            row["eval/clients"] = float(len(scorers))
        return row
