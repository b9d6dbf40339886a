"""``metrics.csv``: every round's figures as one CSV row (``logger=csv``), for users who read logs with pandas.

The same keys the run logs to W&B and ``history.json`` (a column per key, in the order keys first
appear; a round without a key leaves its cell empty), rewritten atomically after every round so
a resumed run's file holds every round. Above ``max_client_series`` clients in a run, per-client
keys (``client/<id>/...``) are left out, as W&B turns them into histograms: a 10,000-client run
would otherwise have a column per client and metric; ``history.json`` keeps them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfed.atomic import replace_atomically

if TYPE_CHECKING:
    from mfed.federation.driver import Driver, Row


class CsvCallback:
    """Writes ``<out_dir>/metrics.csv`` after every round.

    Args:
        out_dir: The run's folder.
        max_client_series: Above this many clients in the run, per-client keys are left out.
        **_: What the run gives every logger (name, group, the resolved config): unused here.

    """

    def __init__(self, out_dir: str | Path, max_client_series: int = 100, **_: Any) -> None:
        if max_client_series < 0:
            raise ValueError(f"logger.max_client_series must be >= 0, got {max_client_series}")
        self.path, self.max_client_series = Path(out_dir) / "metrics.csv", max_client_series

    def on_start(self, driver: Driver) -> None:
        """Create the run's folder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Rewrite the file with every round so far."""
        keep_clients = len(driver.specs) <= self.max_client_series
        columns: dict[str, None] = {}
        for r in driver.history:
            columns.update({k: None for k in r if keep_clients or not k.startswith("client/")})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(driver.history)
        data = text.getvalue().encode()
        replace_atomically(self.path, lambda f: f.write(data))

    def on_end(self, driver: Driver) -> None:
        """Nothing more: the last round's row is written."""
