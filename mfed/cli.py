"""The ``mfed`` console command.

``mfed train [overrides]`` runs a federation; overrides are Hydra's (``key=value``,
``group=option``), e.g. ``mfed train aggregation=fedavg federation.rounds=5 seed=1``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from omegaconf import OmegaConf


def _train(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException

    from mfed.config import load_run_config
    from mfed.run import build, local_dir, start

    try:
        cfg = load_run_config(args.overrides)
        if args.print_config:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return 0
        driver = start(build(cfg), cfg)
    except (HydraException, ValueError, FileNotFoundError) as err:
        print(f"mfed: {_one_line(err)}", file=sys.stderr)
        return 2
    out_dir = local_dir(str(cfg.out_dir))
    resume = f"continue with: mfed train resume={cfg.out_dir}"
    try:
        with _stop_signals_interrupt():
            driver.run()
    except KeyboardInterrupt:
        print(f"mfed: interrupted after {len(driver.history)} of {driver.rounds} rounds; {resume}", file=sys.stderr)
        return 130
    except Exception as err:
        log_file = out_dir / "error.log"
        log_file.write_text(traceback.format_exc())
        print(f"mfed: the run failed: {_one_line(err)} (traceback in {log_file}; {resume})", file=sys.stderr)
        return 1
    print(f"outputs in {cfg.out_dir}: config.yaml, history.json, summary.json, checkpoint.pt")
    for run_dir in sorted(out_dir.glob("wandb/offline-run-*")):
        print(f"W&B offline run: {run_dir} (upload later with: wandb sync {run_dir})")
    return 0


def _one_line(err: BaseException) -> str:
    """The first line of the error's message (or of its cause's, when it has none of its own)."""
    cause: BaseException | None = err
    while cause is not None and not str(cause).strip():
        cause = cause.__cause__ or cause.__context__
    text = str(cause or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """Treat SIGTERM (``ray job stop``, ``kill``) like Ctrl-C, so the run ends cleanly and says how to resume."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. inside a Ray Tune trial): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _data_preview(args: argparse.Namespace) -> int:
    from mfed.config import load_config
    from mfed.data.preview import preview_grid
    from mfed.run import instantiate

    cfg = load_config(args.overrides)
    pool = instantiate(cfg.data.pool)
    keys = [k for k in getattr(pool, "tasks", cfg.tasks.keys())]
    path = preview_grid(pool, range(min(args.n, len(pool))), keys, args.out)
    print(f"wrote {path}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from mfed.config import load_config
    from mfed.sweep import run_sweep

    try:
        cfg = load_config(args.overrides)
        if cfg.get("sweep") is None:
            print("mfed: pick a sweep: mfed sweep sweep=<name> (configs/sweep/)", file=sys.stderr)
            return 2
        base = [o for o in args.overrides if not o.startswith(("sweep=", "out_dir="))]
        rows = run_sweep(cfg.sweep, base, cfg.out_dir)
    except (ValueError, FileNotFoundError) as err:
        print(f"mfed: {err}", file=sys.stderr)
        return 2
    from mfed.loggers.sweep_report import markdown

    print(markdown(rows, str(cfg.sweep.name)).split("\n![")[0])
    print(f"sweep results in {cfg.out_dir}: sweep.md, sweep.json, sweep.png, one run directory per trial")
    return 0


def _report(args: argparse.Namespace) -> int:
    from mfed.loggers.report import write_report

    try:
        path = write_report(args.out_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"mfed: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.parent / 'curves.png'}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(prog="mfed", description="Multi-task federated learning (M-Fed) on Ray")
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run a federation", description=__doc__)
    train.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. aggregation=local federation.rounds=3")
    train.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    train.set_defaults(func=_train)
    data = sub.add_parser("data", help="look at the data").add_subparsers(dest="data_command", required=True)
    preview = data.add_parser("preview", help="write a PNG of a few samples beside every task's target")
    preview.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=fashion_scenes")
    preview.add_argument("--n", type=int, default=6, help="samples to show (default 6)")
    preview.add_argument("--out", default="outputs/data_preview.png", help="PNG path")
    preview.set_defaults(func=_data_preview)
    sweep = sub.add_parser("sweep", help="run a grid of federations on Ray Tune (configs/sweep/)")
    sweep.add_argument("overrides", nargs="*", help="sweep=<name> plus overrides for every trial")
    sweep.set_defaults(func=_sweep)
    report = sub.add_parser("report", help="render a run's curves (PNG) and report.md from history.json")
    report.add_argument("out_dir", help="the run's output directory")
    report.set_defaults(func=_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mfed`` command."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
