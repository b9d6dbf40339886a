"""Console progress (rounds done, time per round, ETA) and the final per-task table, with rich."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mfed.loggers.report import TEST_SPLITS, series
from mfed.tasks.base import Task
from mfed.types import ClientSpec

if TYPE_CHECKING:
    from mfed.federation.driver import Driver, Row


def results_table(tasks: Mapping[str, Task], history: Sequence[Mapping[str, float]]) -> Table:
    """Per task and metric: value at the first evaluation, at the last, the change, and the test figures.

    ``test`` is the global test set (G-FL); ``local test`` (where clients hold one:
    ``data.local_test_fraction``) each client's own held-out data (P-FL); both the mean over the
    task's clients.
    """
    local = any(k.startswith("local_test/") for k in (history[-1] if history else {}))
    table = Table(title="Per-task metrics (val: merged over the task's clients; test: mean over them)")
    for column in ("task", "metric", "val first", "val final", "change", "test", *(("local test",) if local else ())):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for task in tasks.values():
        for metric, higher in task.higher_is_better.items():
            rounds, values = series(history, f"val/{task.name}/{metric}")
            if not values:
                continue
            a, b = values[0], values[-1]
            better = (b > a) == higher and b != a
            arrow = "↑" if higher else "↓"
            change = f"[{'green' if better else 'red'}]{b - a:+.3f}[/]"
            tests = [history[-1].get(f"{split}/{task.name}/{metric}") for split in TEST_SPLITS[: 1 + local]]
            table.add_row(
                task.name, f"{metric} {arrow}", f"{a:.3f} (r{rounds[0]:.0f})",
                f"{b:.3f} (r{rounds[-1]:.0f})", change, *("-" if t is None else f"{t:.3f}" for t in tests),
            )  # fmt: skip
    return table


def round_line(tasks: Mapping[str, Task], row: Mapping[str, float], rounds: int) -> str:
    """One line per round: headline metric and training loss of every task."""
    parts = [f"round {int(row['round'])}/{rounds} {row.get('time/round_s', math.nan):5.1f}s"]
    for task in tasks.values():
        loss = row.get(f"train/{task.name}/loss")
        metric = row.get(f"val/{task.name}/{task.headline}")
        text = f"{task.name}: loss {loss:.4f}" if loss is not None else f"{task.name}: -"
        if metric is not None:
            text += f" {task.headline} {metric:.3f}"
        parts.append(text)
    if "privacy/epsilon" in row:
        parts.append(f"epsilon {row['privacy/epsilon']:.3g}")
    return " | ".join(parts)


def clients_line(specs: Sequence[ClientSpec], shown: int = 6) -> str:
    """``starting 5 clients: a, b, ...``; above ``2 * shown`` clients the count by kind and the first and last few."""
    ids = [s.client_id for s in specs]
    if len(ids) <= 2 * shown:
        return f"starting {len(ids)} clients: {', '.join(ids)}"
    kinds = Counter(s.kind for s in specs)
    counts = ", ".join(f"{kind} {n}" for kind, n in kinds.items())
    return f"starting {len(ids)} clients ({counts}): {', '.join(ids[:shown])}, ..., {', '.join(ids[-shown:])}"


class ConsoleReporter:
    """Shows a progress bar with ETA, a line per round and, at the end, the results table."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress: Progress | None = None
        self.task_id: int | None = None

    def on_start(self, driver: Driver) -> None:
        """Print the run's set-up (and where it resumes) and start the progress bar."""
        info = ", ".join(f"{k}={v}" for k, v in driver.info.items())
        self.console.print(f"[bold]mfed[/] {info}", soft_wrap=True)
        if driver.history:
            done = int(driver.history[-1]["round"])
            self.console.print(f"resuming from round {done + 1} (the checkpoint holds rounds 1-{done})")
        self.console.print(clients_line(driver.specs), soft_wrap=True)
        self.progress = Progress(
            TextColumn("[bold blue]rounds"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
        )  # fmt: skip
        self.progress.start()
        self.task_id = self.progress.add_task("rounds", total=driver.rounds, completed=len(driver.history))

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Advance the bar and print the round's line, one line per fault and one per warning about a setting."""
        lines = [f"{f.client_id} {f.kind}: {f.reason}" for f in driver.faults if f.round == int(row["round"])]
        lines += [w["message"] for w in driver.meta.get("warnings", []) if w["round"] == int(row["round"])]
        for line in lines:
            self.console.print(
                f"[yellow]round {int(row['round'])}: {escape(line)}[/]", soft_wrap=True, markup=True, highlight=False
            )
        self.console.print(round_line(driver.tasks, row, driver.rounds), soft_wrap=True)
        if self.progress is not None and self.task_id is not None:
            self.progress.advance(self.task_id)  # type: ignore[arg-type]

    def on_end(self, driver: Driver) -> None:
        """Stop the bar; print the table of a completed run, or say how the run ended and how to resume it."""
        if self.progress is not None:
            self.progress.stop()
        if driver.status in ("completed", "diverged"):
            self.console.print(results_table(driver.tasks, driver.history))
            if driver.fold.privacy is not None and driver.history:
                self.console.print(driver.fold.privacy.statement(len(driver.history)), soft_wrap=True, highlight=False)
            if driver.status == "diverged":
                self.console.print(f"[bold red]run diverged[/]: {driver.error}", soft_wrap=True, highlight=False)
            return
        done = len(driver.history)
        self.console.print(
            f"[bold red]run {driver.status}[/] after {done} of {driver.rounds} rounds: {driver.error}",
            soft_wrap=True,
            highlight=False,
        )
        kept = driver.info.get("checkpointed")  # what the checkpoint holds, read back: not the rounds run
        if kept:
            out_dir = driver.info.get("out_dir", "<out_dir>")
            self.console.print(
                f"round {kept} is checkpointed; continue with: mfed train resume={out_dir}", soft_wrap=True
            )
