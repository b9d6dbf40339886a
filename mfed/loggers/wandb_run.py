"""The driver's W&B run: per-task curves against ``round``, config and final summary.

Only the driver writes to W&B. ``WANDB_MODE`` decides online/offline/disabled; when it is unset
the run is offline (no account needed; ``wandb sync <out_dir>/wandb/offline-run-*`` uploads it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from mfed.federation.driver import Driver, Row

MODES = ("online", "offline", "disabled")


def per_client_as_histograms(row: Mapping[str, Any], limit: int, histogram: Any) -> dict[str, Any]:
    """``row`` with its per-client keys replaced by one histogram per metric when more than ``limit`` clients.

    ``client/<id>/<rest>`` of every client becomes ``clients/<rest>`` = ``histogram(values)`` (and
    ``clients/<rest>/count``), so a dashboard of 10,000 clients has a panel per metric instead
    of 10,000 series; at or below ``limit`` clients the row is logged as it is.
    """
    clients = {k.split("/", 2)[1] for k in row if k.startswith("client/")}
    if len(clients) <= limit:
        return dict(row)
    out: dict[str, Any] = {k: v for k, v in row.items() if not k.startswith("client/")}
    values: dict[str, list[float]] = {}
    for key, value in row.items():
        if key.startswith("client/") and isinstance(value, int | float):
            values.setdefault(key.split("/", 2)[2], []).append(float(value))
    for rest, numbers in values.items():
        out[f"clients/{rest}"] = histogram(numbers)
        out[f"clients/{rest}/count"] = float(len(numbers))
    return out


class WandbCallback:
    """Logs each round's row to a W&B run whose x-axis is ``round``.

    Args:
        out_dir: The run's output directory; W&B files go to ``<out_dir>/wandb``.
        project: W&B project.
        entity: W&B entity (team or user); ``None`` for the default.
        name: Run name.
        group: Run group (e.g. the task mix, or a sweep).
        tags: Run tags.
        run_config: The resolved run config.
        mode: ``online``, ``offline`` or ``disabled``; ``None`` reads ``WANDB_MODE``, else offline.
        max_client_series: Above this many clients in a round, their per-client keys are logged as
            one histogram per metric (:func:`per_client_as_histograms`).

    """

    def __init__(
        self,
        out_dir: str | Path,
        project: str = "mfed",
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        run_config: Mapping[str, Any] | None = None,
        mode: str | None = None,
        max_client_series: int = 100,
    ) -> None:
        if max_client_series < 0:
            raise ValueError(f"logger.max_client_series must be >= 0, got {max_client_series}")
        self.max_client_series = max_client_series
        mode = mode or os.environ.get("WANDB_MODE") or "offline"
        if mode not in MODES:
            raise ValueError(f"logger.mode (or WANDB_MODE) must be one of {MODES}, got {mode!r}")
        self.out_dir, self.project, self.entity = Path(out_dir), project, entity
        self.name, self.group, self.tags, self.mode = name, group, list(tags), mode
        plain = OmegaConf.to_container(run_config, resolve=True) if isinstance(run_config, DictConfig) else run_config
        self.config: dict[str, Any] = {str(k): v for k, v in plain.items()} if isinstance(plain, Mapping) else {}
        self.run: Any = None

    def on_start(self, driver: Driver) -> None:
        """Open the run (continuing the resumed run's W&B run) and make ``round`` the step metric."""
        import wandb

        self.out_dir.mkdir(parents=True, exist_ok=True)
        run_id = driver.meta.get("wandb_id")  # set when the resumed run logged to W&B
        self.run = wandb.init(
            project=self.project, entity=self.entity, name=self.name, group=self.group,
            tags=self.tags, config=self.config, dir=str(self.out_dir), mode=self.mode,  # type: ignore[arg-type]
            id=run_id, resume="allow" if run_id else None,
            settings=wandb.Settings(quiet=True),  # the console reporter already shows the run
        )  # fmt: skip
        driver.meta["wandb_id"] = self.run.id  # checkpointed: a resume continues this run
        self.run.define_metric("round")
        self.run.define_metric("*", step_metric="round")
        if run_id is None or not self._finished.exists():
            # resumed from a run without W&B, or from one killed before W&B wrote out its rows (a SIGKILL
            # takes W&B's writer with it): log the earlier rounds again, so W&B holds every round history.json does
            for row in driver.history:
                self._log(row)
        self._finished.unlink(missing_ok=True)

    @property
    def _finished(self) -> Path:
        """A marker: the last W&B run of this folder was finished (its rows written out)."""
        return self.out_dir / "wandb" / ".finished"

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Log the round's row."""
        if self.run is not None:
            self._log(row)

    def _log(self, row: Row) -> None:
        import wandb

        self.run.log(per_client_as_histograms(row, self.max_client_series, wandb.Histogram))

    def on_end(self, driver: Driver) -> None:
        """Write how the run ended and its final metrics to the summary, and close the run.

        ``final/test/...`` holds the global test set's figures (G-FL), ``final/local_test/...`` the
        clients' own held-out data's (P-FL, where configured), ``final/val/...`` the last
        validation, ``final/privacy/epsilon`` the budget spent under DP and ``privacy`` the guarantee
        in words (what it rests on); ``status`` says whether the run completed, ``faults`` what was
        rejected, and ``warnings`` what the run says of its settings.
        """
        if self.run is None:
            return
        final: dict[str, Any] = {"status": driver.status, "error": driver.error, "faults": len(driver.faults)}
        for row in driver.history:
            final.update(
                {f"final/{k}": v for k, v in row.items() if k.startswith(("val/", "test/", "local_test/", "privacy/"))}
            )
        if driver.faults:
            final["fault/reasons"] = [f"round {f.round} {f.client_id}: {f.reason}" for f in driver.faults[-100:]]
        if driver.fold.privacy is not None and driver.history:
            final["privacy"] = driver.fold.privacy.statement(len(driver.history))
        if driver.meta.get("warnings"):
            final["warnings"] = [f"round {w['round']}: {w['message']}" for w in driver.meta["warnings"]]
        self.run.summary.update(final)
        self.run.finish(exit_code=0 if driver.status == "completed" else 1)
        self.run = None
        self._finished.parent.mkdir(parents=True, exist_ok=True)
        self._finished.touch()
